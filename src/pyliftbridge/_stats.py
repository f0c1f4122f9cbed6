"""Client statistics: the snapshot types of ``client.stats()`` and the cheap counters behind them.

Counters are plain integers kept by the object that already owns the state
they count, and changed under the lock that object already holds at that
point (or by the one thread that owns them): a publish stream counts its
publishes and acks under its mutex, a connection counts bytes where it reads
and writes them, a subscription counts what its reader takes. ``stats()``
reads them all and builds the immutable :class:`ClientStats`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TypeVar

__all__ = [
    "BrokerStats",
    "ClientStats",
    "LatencyHistogram",
    "LatencyStats",
    "PublishCounters",
    "PublishStats",
    "SubscriptionStats",
    "TransportCounters",
]

#: Linear sub-buckets per power of two (2**4 = 16: values are kept within 1/16 = 6.25 %).
_SUB_BITS = 4
_SUB = 1 << _SUB_BITS
#: Values below this (microseconds) have a bucket each.
_LINEAR = _SUB << 1
#: Largest value kept apart (2**36 us, about 19 hours); longer ones count as this.
_MAX_US = (1 << 36) - 1
#: Most values of one batch of acks that go into the buckets (see ``record_since``).
_SAMPLES = 8
_BUCKETS = (((_MAX_US.bit_length() - _SUB_BITS - 1) + 1) << _SUB_BITS) + _SUB


def _bucket_of(us: int) -> int:
    if us < _LINEAR:
        return us
    shift = us.bit_length() - _SUB_BITS - 1
    return (shift << _SUB_BITS) + (us >> shift)


def _bucket_high(index: int) -> int:
    """Largest value (microseconds) that falls in bucket ``index``."""
    if index < _LINEAR:
        return index
    shift = (index >> _SUB_BITS) - 1
    mantissa = index - (shift << _SUB_BITS)
    return ((mantissa + 1) << shift) - 1


class LatencyHistogram:
    """A log-linear histogram of durations (microseconds) in a fixed array.

    HDR-style: values below 32 us have a bucket each, larger ones share 16
    buckets per power of two, so a percentile is off by at most 6.25 % and
    memory stays at a few hundred integers however many values go in.
    Batches are sampled (see :meth:`record_since`). Not locked: its owner
    records into it under a lock it holds anyway.
    """

    __slots__ = ("buckets", "count", "max_us", "min_us", "total_us")

    def __init__(self) -> None:
        self.buckets = [0] * _BUCKETS
        self.count = 0
        self.total_us = 0
        self.min_us = _MAX_US
        self.max_us = 0

    def record(self, seconds: float) -> None:
        """Add one duration."""
        us = int(seconds * 1_000_000)
        if us < 0:
            us = 0
        elif us > _MAX_US:
            us = _MAX_US
        self.buckets[us if us < _LINEAR else _bucket_of(us)] += 1
        self.count += 1
        self.total_us += us
        self.min_us = min(self.min_us, us)
        self.max_us = max(self.max_us, us)

    def record_since(self, now: float, starts: list[float]) -> None:
        """Add the durations from each of ``starts`` to ``now`` (seconds).

        One call per batch of acks. Count, sum, min and max are exact (from
        builtins over the batch); the buckets get at most ``_SAMPLES``
        evenly spaced values of a large batch, each standing for its share
        of the batch, so the per-ack cost stays a small fraction of a
        microsecond however busy the stream is.
        """
        count = len(starts)
        if not count:
            return
        longest = int((now - min(starts)) * 1_000_000)
        shortest = int((now - max(starts)) * 1_000_000)
        if shortest < 0 or longest > _MAX_US:
            for start in starts:  # out of range: clamped one at a time
                self.record(now - start)
            return
        step = count // _SAMPLES or 1
        sample = starts[::step] if step > 1 else starts
        buckets = self.buckets
        linear = _LINEAR
        sub_bits = _SUB_BITS
        top = sub_bits + 1
        index = 0
        for start in sample:
            us = int((now - start) * 1_000_000)
            if us < linear:
                index = us
            else:
                shift = us.bit_length() - top
                index = (shift << sub_bits) + (us >> shift)
            buckets[index] += step
        # The last value stands for what is left, so the weights add up to count.
        buckets[index] -= len(sample) * step - count
        self.count += count
        self.total_us += max(0, int((now * count - math.fsum(starts)) * 1_000_000))
        self.min_us = min(self.min_us, shortest)
        self.max_us = max(self.max_us, longest)

    def merge(self, other: LatencyHistogram) -> None:
        """Add every value of ``other``."""
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets)]
        self.count += other.count
        self.total_us += other.total_us
        self.min_us = min(self.min_us, other.min_us)
        self.max_us = max(self.max_us, other.max_us)

    def copy(self) -> LatencyHistogram:
        """An independent copy."""
        twin = LatencyHistogram()
        twin.merge(self)
        return twin

    def percentile(self, fraction: float) -> int:
        """The value (microseconds) at or below which ``fraction`` of the values lie."""
        if not self.count:
            return 0
        rank = max(1, int(fraction * self.count + 0.999999))
        seen = 0
        for index, n in enumerate(self.buckets):
            seen += n
            if seen >= rank:
                return min(_bucket_high(index), self.max_us)
        return self.max_us

    def summary(self) -> LatencyStats:
        """The histogram as an immutable :class:`LatencyStats`."""

        def us(value: int) -> timedelta:
            return timedelta(microseconds=value)

        if not self.count:
            zero = timedelta(0)
            return LatencyStats(0, zero, zero, zero, zero, zero, zero, zero)
        return LatencyStats(
            count=self.count,
            min=us(self.min_us),
            max=us(self.max_us),
            mean=us(self.total_us // self.count),
            p50=us(self.percentile(0.50)),
            p90=us(self.percentile(0.90)),
            p99=us(self.percentile(0.99)),
            p999=us(self.percentile(0.999)),
        )


class PublishCounters:
    """What one publish stream counts (changed under that stream's mutex)."""

    __slots__ = ("acked", "failed", "latency", "no_ack", "resent", "sent")

    def __init__(self) -> None:
        self.sent = 0
        self.no_ack = 0
        self.resent = 0
        self.acked = 0
        #: Error class name -> publishes that failed with it.
        self.failed: dict[str, int] = {}
        self.latency = LatencyHistogram()

    def fail(self, error: type[BaseException], count: int = 1) -> None:
        """Count ``count`` publishes failed with an ``error``."""
        name = error.__name__
        self.failed[name] = self.failed.get(name, 0) + count

    def add(self, other: PublishCounters) -> None:
        """Add ``other``'s counts to these."""
        self.sent += other.sent
        self.no_ack += other.no_ack
        self.resent += other.resent
        self.acked += other.acked
        for name, n in other.failed.items():
            self.failed[name] = self.failed.get(name, 0) + n
        self.latency.merge(other.latency)


class TransportCounters:
    """What one broker's connections count, kept by its channel."""

    __slots__ = (
        "bytes_received",
        "bytes_sent",
        "connect_failures",
        "connections_lost",
        "connections_opened",
        "messages_received",
        "messages_sent",
    )

    def __init__(self) -> None:
        self.connections_opened = 0
        self.connections_lost = 0
        self.connect_failures = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.messages_sent = 0
        self.messages_received = 0

    def add_connection(self, conn: object) -> None:
        """Add a connection's own counts (bytes, messages, whether it was lost)."""
        self.bytes_sent += getattr(conn, "bytes_sent", 0)
        self.bytes_received += getattr(conn, "bytes_received", 0)
        self.messages_sent += getattr(conn, "messages_sent", 0)
        self.messages_received += getattr(conn, "messages_received", 0)
        self.connections_lost += bool(getattr(conn, "lost", False))

    def snapshot(self, address: str, live: Iterable[object]) -> BrokerStats:
        """These counts plus those of the ``live`` connections, as a :class:`BrokerStats`."""
        total = TransportCounters()
        for name in self.__slots__:
            setattr(total, name, getattr(self, name))
        for conn in live:
            total.add_connection(conn)
        return BrokerStats(address, *(getattr(total, f.name) for f in _BROKER_FIELDS))


_V = TypeVar("_V")


def frozen_counts(counts: Mapping[str, _V]) -> Mapping[str, _V]:
    """A read-only copy of ``counts``, sorted by name."""
    return MappingProxyType(dict(sorted(counts.items())))


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Percentiles of a latency histogram (accurate to about 6 %)."""

    #: How many durations were recorded.
    count: int
    #: Shortest duration.
    min: timedelta
    #: Longest duration.
    max: timedelta
    #: Mean duration.
    mean: timedelta
    #: Median.
    p50: timedelta
    #: 90th percentile.
    p90: timedelta
    #: 99th percentile.
    p99: timedelta
    #: 99.9th percentile.
    p999: timedelta


@dataclasses.dataclass(frozen=True)
class PublishStats:
    """Publishes since the client started.

    ``sent`` counts publishes handed to a connection (once each; a resend
    after NOT_FOUND is counted in ``resent``). Every sent publish that waits
    for an ack ends up ``acked``, ``failed`` or is still ``in_flight``;
    ``sent_without_ack`` are those sent with ``AckPolicy.NONE``. ``failed``
    also counts publishes that failed before they could be sent (no free
    slot, no reachable broker, no such stream), keyed by the error's class
    name.
    """

    #: Publishes handed to a connection.
    sent: int
    #: Of those, sent with ``AckPolicy.NONE`` (never acked).
    sent_without_ack: int
    #: Publishes sent again after the server answered NOT_FOUND.
    resent: int
    #: Publishes acknowledged by the server.
    acked: int
    #: Error class name -> publishes failed with it.
    failed: Mapping[str, int]
    #: Publishes waiting for their ack right now.
    in_flight: int
    #: Time from ``publish``/``publish_async`` to the ack.
    ack_latency: LatencyStats

    @property
    def failed_total(self) -> int:
        """Every failed publish, whatever the error."""
        return sum(self.failed.values())


@dataclasses.dataclass(frozen=True)
class BrokerStats:
    """Traffic with one broker address since the client started."""

    #: ``host:port`` as the client dials it.
    address: str
    #: HTTP/2 connections opened.
    connections_opened: int
    #: Connections that broke (not closed by the client or by a graceful GOAWAY).
    connections_lost: int
    #: Attempts to connect that failed.
    connect_failures: int
    #: Bytes written to the connections (HTTP/2 framing included).
    bytes_sent: int
    #: Bytes read from the connections.
    bytes_received: int
    #: gRPC messages sent (requests, publishes).
    messages_sent: int
    #: gRPC messages received (responses, acks, subscription messages).
    messages_received: int


_BROKER_FIELDS = dataclasses.fields(BrokerStats)[1:]


@dataclasses.dataclass(frozen=True)
class SubscriptionStats:
    """One open subscription (one partition)."""

    #: Stream read.
    stream: str
    #: Partition read.
    partition: int
    #: Messages received so far.
    messages_received: int
    #: Times it subscribed again after a connection loss or leader change.
    resubscribes: int


@dataclasses.dataclass(frozen=True)
class ClientStats:
    """An immutable snapshot of a client's counters (``client.stats()``).

    Every count runs from the moment the client was created.
    """

    #: When the client was created.
    started_at: datetime
    #: When this snapshot was taken.
    taken_at: datetime
    #: Publishing.
    publishes: PublishStats
    #: RPC method name -> status name (``"OK"``, ``"UNAVAILABLE"``...) -> calls.
    rpcs: Mapping[str, Mapping[str, int]]
    #: Per broker address, sorted by address.
    brokers: tuple[BrokerStats, ...]
    #: Metadata fetches that succeeded.
    metadata_refreshes: int
    #: Metadata fetches that failed (after every retry).
    metadata_refresh_failures: int
    #: Times a subscription subscribed again (all subscriptions, closed ones too).
    resubscribes: int
    #: Messages received by subscriptions (closed ones too).
    messages_consumed: int
    #: The subscriptions open now.
    subscriptions: tuple[SubscriptionStats, ...]

    @property
    def uptime(self) -> timedelta:
        """Time covered by the counts."""
        return self.taken_at - self.started_at

    @property
    def active_subscriptions(self) -> int:
        """How many subscriptions are open."""
        return len(self.subscriptions)

    @property
    def bytes_sent(self) -> int:
        """Bytes written to every broker."""
        return sum(b.bytes_sent for b in self.brokers)

    @property
    def bytes_received(self) -> int:
        """Bytes read from every broker."""
        return sum(b.bytes_received for b in self.brokers)

    @property
    def messages_sent(self) -> int:
        """gRPC messages sent to every broker."""
        return sum(b.messages_sent for b in self.brokers)

    @property
    def messages_received(self) -> int:
        """gRPC messages received from every broker."""
        return sum(b.messages_received for b in self.brokers)

    @property
    def connections_lost(self) -> int:
        """Connections to any broker that broke."""
        return sum(b.connections_lost for b in self.brokers)
