"""What stands behind the client's publish methods (asyncio flavour).

Partition choice, which publish stream a partition goes out on, the
in-flight limit (backpressure), correlation ids, ack timeouts, and
resolving each publish exactly once. The client keeps the public methods
and their documentation; the streams themselves are in ``_publisher``.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._ids import CorrelationIds
from .._publish_codec import encode_publish_request
from .._requests import to_bytes
from .._stats import PublishCounters, PublishStats, frozen_counts
from ..errors import (
    AckTimeoutError,
    DeadlineExceededError,
    InvalidArgumentError,
    LiftbridgeError,
    NoSuchStreamError,
    UnavailableError,
)
from ..models import Ack, AckPolicy, Metadata
from ..partitioners import Partitioner
from ._backend import Future, Mutex, Semaphore, monotonic, new_future, wait_future
from ._publisher import PendingPublish, PublishStream

if TYPE_CHECKING:
    from .channel import AsyncChannel
    from .client import AsyncClient

__all__ = ["AsyncPublishing"]

log = logging.getLogger("pyliftbridge.publish")

#: Seconds a broker that refused a publish stream is passed over.
_UNREACHABLE_FOR = 5.0

#: Longest sleep of the ack-timeout worker (it also wakes when the client closes).
_EXPIRY_TICK = 0.25


class AsyncPublishing:
    """The publishing state of one client."""

    def __init__(self, client: AsyncClient, ack_timeout: float, max_inflight: int) -> None:
        self._client = client
        #: Default seconds a publish waits for its ack.
        self.ack_timeout = ack_timeout
        #: Correlation ids of this client's publishes.
        self.ids = CorrelationIds()
        self._mutex = Mutex()
        self._inflight = Semaphore(max_inflight)
        #: Broker address -> its publish stream.
        self._streams: dict[str, PublishStream] = {}
        #: Broker address -> until when it is passed over.
        self._unreachable: dict[str, float] = {}
        #: (stream, partition) -> publish stream, valid for the metadata in ``_routes_for``.
        self._routes: dict[tuple[str, int], PublishStream] = {}
        self._routes_for: Metadata | None = None
        #: Publishes that failed before they were sent (changed under ``_mutex``).
        self._counters = PublishCounters()

    def channel(self, address: str) -> AsyncChannel:
        """The client's channel to ``address`` (for the publish streams)."""
        return self._client._channel(address)

    async def _partition_for(
        self,
        stream: str,
        key: bytes | None,
        value: bytes,
        partition: int | None,
        partitioner: Partitioner | None,
    ) -> int:
        if partition is not None:
            if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
                raise InvalidArgumentError(f"partition must be an int >= 0, not {partition!r}")
            return partition
        if partitioner is None:
            return 0
        metadata = self._client._metadata
        if metadata is None or stream not in metadata.streams:
            metadata = await self._client._refresh_metadata([stream])
            if stream not in metadata.streams:
                raise NoSuchStreamError(f"stream {stream!r} does not exist")
        count = metadata.partition_count(stream)
        chosen = partitioner(stream, key, value, count)
        if not isinstance(chosen, int) or (count and not 0 <= chosen < count):
            raise InvalidArgumentError(
                f"partitioner returned {chosen!r} for a stream of {count} partitions"
            )
        return chosen

    def _stream_for(self, stream: str, partition: int, avoid: set[str]) -> PublishStream:
        # Spread partitions over the brokers (any broker accepts any publish);
        # a given partition keeps using the same stream while brokers are
        # stable. Brokers that recently refused a stream are skipped: a dead
        # broker stays listed in metadata. The choice is remembered until the
        # metadata is replaced or a broker refuses, so the publish path does
        # not redo it per message.
        key = (stream, partition)
        metadata = self._client._metadata
        if not avoid and self._routes_for is metadata:
            cached = self._routes.get(key)
            if cached is not None:
                return cached
        now = monotonic()
        addresses = sorted(self._client._broker_addresses())
        usable = (
            [a for a in addresses if a not in avoid and self._unreachable.get(a, 0.0) <= now]
            or [a for a in addresses if a not in avoid]
            or addresses
        )
        address = usable[zlib.crc32(f"{stream}:{partition}".encode()) % len(usable)]
        with self._mutex:
            publisher = self._streams.get(address)
            if publisher is None:
                publisher = self._streams[address] = PublishStream(self, address)
            if not avoid:
                if self._routes_for is not metadata:
                    self._routes = {}
                    self._routes_for = metadata
                self._routes[key] = publisher
            return publisher

    async def publish(
        self,
        stream: str,
        value: bytes | str,
        key: bytes | str | None,
        headers: Mapping[str, bytes | str] | None,
        partition: int | None,
        partitioner: Partitioner | None,
        ack_policy: AckPolicy,
        expected_offset: int | None,
        correlation_id: str | None,
        timeout: float | None,
        *,
        write_now: bool,
    ) -> Future[Ack | None]:
        """Queue one publish (see ``AsyncClient.publish_async``); return its future.

        ``write_now`` writes it in this call rather than leaving it to the
        connection's writer to batch with others.
        """
        self._client._check_open()
        value_bytes = value if type(value) is bytes else to_bytes(value, "value")
        key_bytes = None if key is None else to_bytes(key, "key")
        telemetry = self._client._telemetry
        span = None
        if telemetry is not None:
            span, headers = telemetry.publish_started(stream, headers, len(value_bytes))
        try:
            if partition is None or type(partition) is not int or partition < 0:
                chosen = await self._partition_for(
                    stream, key_bytes, value_bytes, partition, partitioner
                )
            else:
                chosen = partition
            cid = correlation_id or self.ids.next()
            if not isinstance(cid, str):
                raise InvalidArgumentError(
                    f"correlation_id must be a str, not {type(cid).__name__}"
                )
            if span is not None:
                telemetry.publish_routed(span, chosen, cid)  # type: ignore[union-attr]
            payload = encode_publish_request(
                stream,
                value_bytes,
                key=key_bytes,
                headers=headers,
                partition=chosen,
                ack_policy=ack_policy,
                expected_offset=expected_offset,
                correlation_id=cid,
            )
            wait = self.ack_timeout if timeout is None else timeout
            if not await self._inflight.acquire(wait):
                raise AckTimeoutError(
                    f"no publish slot freed within {wait:.1f}s "
                    "(max_inflight_publishes publishes are awaiting acks)"
                )
            future: Future[Ack | None] = new_future()
            pending = None
            if ack_policy != AckPolicy.NONE:
                now = monotonic()
                pending = PendingPublish(future, stream, chosen, cid, now + wait, payload, now)
            tried: set[str] = set()
            try:
                while True:
                    publisher = self._stream_for(stream, chosen, tried)
                    try:
                        await publisher.send(payload, pending, write_now=write_now)
                        break
                    except UnavailableError as exc:
                        # send() fails only for a message that never left, so
                        # another broker may take it.
                        tried.add(publisher.address)
                        log.info(
                            "PublishAsync: %s unavailable (%s); publishing to %s elsewhere",
                            publisher.address,
                            exc,
                            stream,
                        )
                        with self._mutex:
                            self._unreachable[publisher.address] = monotonic() + _UNREACHABLE_FOR
                            self._routes = {}
                        if len(tried) >= len(self._client._broker_addresses()):
                            raise
            except BaseException:
                self._inflight.release()
                raise
            if pending is None:
                # AckPolicy.NONE: done once written; the ack-timeout worker (which
                # wakes at least every 250 ms) only ever sees publishes that wait.
                self._inflight.release()
                future.set_result(None)
            if span is not None:
                telemetry.publish_sent(span, future)  # type: ignore[union-attr]
            return future
        except BaseException as exc:
            # Failed before it was sent: nothing else counts it.
            if isinstance(exc, LiftbridgeError):
                with self._mutex:
                    self._counters.fail(type(exc))
            if span is not None:
                telemetry.publish_failed(span, exc)  # type: ignore[union-attr]
            raise

    def count_rpc(self, method: str, error: LiftbridgeError | None) -> None:
        """Count one call of ``method`` (see ``AsyncClient._count_rpc``)."""
        self._client._count_rpc(method, error)

    def stats(self) -> PublishStats:
        """The publish counters of every stream, added up."""
        total = PublishCounters()
        with self._mutex:
            total.add(self._counters)
            streams = list(self._streams.values())
        in_flight = 0
        for publisher in streams:
            counters, pending = publisher.stats()
            total.add(counters)
            in_flight += pending
        return PublishStats(
            sent=total.sent,
            sent_without_ack=total.no_ack,
            resent=total.resent,
            acked=total.acked,
            failed=frozen_counts(total.failed),
            in_flight=in_flight,
            ack_latency=total.latency.summary(),
        )

    def resolve(
        self, pending: PendingPublish, ack: Ack | None, error: LiftbridgeError | None = None
    ) -> None:
        """Resolve a pending publish (its caller frees its slot with ``release_slots``).

        A future the caller cancelled stays cancelled.
        """
        future = pending.future
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(ack)

    def release_slots(self, count: int) -> None:
        """Free the in-flight slots of ``count`` publishes no longer pending."""
        if count:
            self._inflight.release(count)

    async def flush(self, timeout: float | None) -> None:
        """Wait until every publish made so far is acked or failed."""
        deadline = None if timeout is None else monotonic() + timeout
        futures: list[Any] = [f for p in list(self._streams.values()) for f in p.pending_futures()]
        for future in futures:
            remaining = None if deadline is None else max(0.0, deadline - monotonic())
            try:
                await wait_future(future, remaining)
            except LiftbridgeError:
                pass  # reported through that publish's own future (AckTimeoutError too)
            except TimeoutError:
                raise DeadlineExceededError("flush timed out with publishes pending") from None

    async def expire(self, now: float) -> float:
        """Fail publishes whose ack timeout passed, send again those refused with
        NOT_FOUND that are due; return seconds until the next check."""
        earliest: float | None = None
        for publisher in list(self._streams.values()):
            for due in (publisher.expire(now), await publisher.resend_due(now)):
                if due is not None and (earliest is None or due < earliest):
                    earliest = due
        return _EXPIRY_TICK if earliest is None else min(_EXPIRY_TICK, max(0.0, earliest - now))

    def wake_for_retries(self) -> None:
        """A publish waits to be sent again: have the ack-timeout worker look soon."""
        self._client._wake_expiry()

    def fail_all(self, error: LiftbridgeError) -> None:
        """Fail every pending publish with ``error`` (the client is closing)."""
        for publisher in list(self._streams.values()):
            publisher.fail_all(error)
