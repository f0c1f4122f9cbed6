"""The python-liftbridge 0.0.7 API, over pyliftbridge's blocking client.

Code written for python-liftbridge moves over by changing its import line::

    from pyliftbridge.compat import Lift, Message, Stream, ErrStreamExists

The names, signatures and fluent builders are python-liftbridge's; the
behaviour is pyliftbridge's where python-liftbridge was wrong: ``publish``
waits for its ack (``AckPolicy.LEADER`` unless the message says otherwise),
``start_at_earliest_received()`` starts at the oldest message and
``start_at_latest_received()`` at the newest, received messages report their
stream *and* subject, values and keys may be ``str`` or ``bytes``, and every
failure is a typed :class:`~pyliftbridge.LiftbridgeError` (the ``Err*``
names here are aliases of those classes). The documentation's migration page
lists every difference. New code should use :class:`pyliftbridge.Client`.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from types import TracebackType

from ._options import TLSConfig
from ._sync.client import Client
from ._time import datetime_from_ns, timedelta_to_ns
from .errors import (
    ClientClosedError,
    DeadlineExceededError,
    InvalidArgumentError,
    NoSuchStreamError,
    StreamExistsError,
)
from .models import Ack, AckPolicy, Metadata
from .models import Message as _Received

__all__ = [
    "ErrChannelClosed",
    "ErrDeadlineExceeded",
    "ErrNoSuchStream",
    "ErrStreamExists",
    "Lift",
    "Message",
    "StartPosition",
    "Stream",
]

ErrStreamExists = StreamExistsError
"""python-liftbridge's name for `StreamExistsError`."""
ErrNoSuchStream = NoSuchStreamError
"""python-liftbridge's name for `NoSuchStreamError`."""
ErrChannelClosed = ClientClosedError
"""python-liftbridge's name for `ClientClosedError` (the client was closed)."""
ErrDeadlineExceeded = DeadlineExceededError
"""python-liftbridge's (unreleased) name for `DeadlineExceededError`."""


class StartPosition(enum.IntEnum):
    """Where a subscription starts (the wire values python-liftbridge exposed)."""

    NEW_ONLY = 0
    """Only messages published after the subscription starts."""
    OFFSET = 1
    """At ``Stream.start_offset``."""
    EARLIEST = 2
    """At the oldest message still in the partition."""
    LATEST = 3
    """At the newest message, then new ones."""
    TIMESTAMP = 4
    """At the first message received at or after ``Stream.start_timestamp``."""


class Stream:
    """A stream to create, delete or subscribe to, with a start position.

    ``max_replication=True`` replicates to every broker (``replication_factor``
    becomes -1, as in python-liftbridge). ``partitions`` and
    ``subscribe_to_partition`` are python-liftbridge's unreleased additions;
    they are keyword-only here so 0.0.7's positional order is kept. The
    ``start_at_*`` builders change this object and return it.
    """

    def __init__(
        self,
        subject: str,
        name: str,
        group: str | None = None,
        replication_factor: int = 1,
        max_replication: bool = False,
        start_offset: int | None = None,
        start_timestamp: int | None = None,
        *,
        partitions: int = 1,
        subscribe_to_partition: int = 0,
    ) -> None:
        self.subject = subject
        self.name = name
        self.group = group
        self.replication_factor = -1 if max_replication else replication_factor
        self.partitions = partitions
        self.subscribe_to_partition = subscribe_to_partition
        self.start_position = StartPosition.NEW_ONLY
        self.start_offset = start_offset
        self.start_timestamp = start_timestamp
        """Unix nanoseconds, used with ``StartPosition.TIMESTAMP``."""

    def start_at_offset(self, offset: int) -> Stream:
        """Start at message ``offset``."""
        self.start_position = StartPosition.OFFSET
        self.start_offset = offset
        self.start_timestamp = None
        return self

    def start_at_time(self, date: datetime) -> Stream:
        """Start at the first message received at or after ``date``.

        A naive ``date`` is local time (as ``datetime.timestamp()`` reads it).
        """
        aware = date if date.tzinfo is not None else date.astimezone()
        return self._start_at_ns(round(aware.timestamp() * 1_000_000) * 1000)

    def start_at_time_delta(self, time_delta: timedelta) -> Stream:
        """Start at the first message received ``time_delta`` ago or later."""
        return self._start_at_ns(time.time_ns() - timedelta_to_ns(time_delta))

    def _start_at_ns(self, ns: int) -> Stream:
        self.start_position = StartPosition.TIMESTAMP
        self.start_timestamp = ns
        self.start_offset = None
        return self

    def start_at_latest_received(self) -> Stream:
        """Start at the newest message in the partition, then follow new ones."""
        self.start_position = StartPosition.LATEST
        return self

    def start_at_earliest_received(self) -> Stream:
        """Start at the oldest message still in the partition."""
        self.start_position = StartPosition.EARLIEST
        return self

    def _start_at(self) -> str | int | datetime:
        """The position as :meth:`pyliftbridge.Client.subscribe` takes it."""
        position = self.start_position
        if position is StartPosition.OFFSET:
            return self.start_offset or 0
        if position is StartPosition.TIMESTAMP:
            return datetime_from_ns(self.start_timestamp or 0)
        return {
            StartPosition.EARLIEST: "earliest",
            StartPosition.LATEST: "latest",
        }.get(position, "new")

    def __repr__(self) -> str:
        return (
            f"Stream(subject={self.subject!r}, name={self.name!r}, "
            f"start_position={self.start_position.name})"
        )


class Message:
    """A message to publish, or one received from :meth:`Lift.subscribe`.

    To publish, give ``stream`` (for :meth:`Lift.publish`) or ``subject``
    (for :meth:`Lift.publish_to_subject`). ``value`` and ``key`` may be
    ``str`` (sent as UTF-8) or ``bytes``; received messages carry ``bytes``.
    ``timestamp`` is Unix nanoseconds (received messages only).
    """

    def __init__(
        self,
        value: bytes | str,
        stream: str | None = None,
        subject: str | None = None,
        key: bytes | str | None = None,
        ack_inbox: str | None = None,
        correlation_id: str | None = None,
        offset: int | None = None,
        timestamp: int | None = None,
        partition: int | None = None,
        headers: Mapping[str, bytes | str] | None = None,
    ) -> None:
        if stream is None and subject is None:
            raise InvalidArgumentError("Either stream or subject should be provided")
        self.value = value
        self.stream = stream
        self.subject = subject
        self.key = key
        self.ack_inbox = ack_inbox
        self.correlation_id = correlation_id
        self.offset = offset
        self.timestamp = timestamp
        self.partition = partition
        self.headers: Mapping[str, bytes | str] = dict(headers or {})
        self.ack_policy = AckPolicy.LEADER

    def ack_policy_all(self) -> Message:
        """Ack once every in-sync replica has the message."""
        self.ack_policy = AckPolicy.ALL
        return self

    def ack_policy_leader(self) -> Message:
        """Ack once the partition leader has the message (the default)."""
        self.ack_policy = AckPolicy.LEADER
        return self

    def ack_policy_none(self) -> Message:
        """Send no ack: publishing returns None at once, with no durability promise."""
        self.ack_policy = AckPolicy.NONE
        return self

    @classmethod
    def _received(cls, message: _Received) -> Message:
        received = cls(
            message.value,
            stream=message.stream,
            subject=message.subject,
            key=message.key,
            ack_inbox=message.ack_inbox or None,
            correlation_id=message.correlation_id or None,
            offset=message.offset,
            timestamp=message.timestamp_ns,
            partition=message.partition,
            headers=message.headers,
        )
        received.ack_policy = message.ack_policy
        return received

    def _check_no_ack_inbox(self) -> None:
        if self.ack_inbox:
            raise InvalidArgumentError(
                "ack_inbox is not supported over gRPC; publish through NATS with "
                "pyliftbridge.nats_publisher to get acks on an inbox"
            )

    def __repr__(self) -> str:
        return (
            f"Message(value={self.value!r}, stream={self.stream!r}, subject={self.subject!r}, "
            f"key={self.key!r}, offset={self.offset!r}, partition={self.partition!r})"
        )


class Lift:
    """A python-liftbridge client: connects at once, like python-liftbridge's ``Lift``.

    ``timeout`` bounds the first connection (the seed waited that long for
    its channel); an unreachable server raises
    :class:`~pyliftbridge.UnavailableError` or
    :class:`~pyliftbridge.DeadlineExceededError` instead of exiting the
    process. ``tls_cert`` is a CA file for TLS; ``tls`` (a
    :class:`~pyliftbridge.TLSConfig`) replaces it, for mutual TLS for one.
    Also a context manager.
    """

    def __init__(
        self,
        ip_address: str = "127.0.0.1:9292",
        timeout: float = 5,
        tls_cert: str | None = None,
        *,
        tls: TLSConfig | None = None,
    ) -> None:
        self.ip_address = ip_address
        self.timeout = timeout
        if tls is None and tls_cert:
            tls = TLSConfig(ca_file=tls_cert)
        self.client = Client(ip_address, tls=tls)
        """The :class:`pyliftbridge.Client` underneath, for everything else."""
        try:
            self.client.fetch_metadata(timeout=timeout)
        except BaseException:
            self.client.close()
            raise

    def create_stream(self, stream: Stream) -> None:
        """Create ``stream``. Raises ErrStreamExists when its name is taken."""
        self.client.create_stream(
            stream.subject,
            stream.name,
            group=stream.group,
            replication_factor=max(stream.replication_factor, 1),
            max_replication=stream.replication_factor == -1,
            partitions=stream.partitions,
        )

    def delete_stream(self, stream: Stream | str) -> None:
        """Delete a stream (a Stream or its name). Raises ErrNoSuchStream."""
        self.client.delete_stream(stream if isinstance(stream, str) else stream.name)

    def publish(self, message: Message) -> Ack | None:
        """Publish to ``message.stream`` and wait for the ack (None with ack_policy_none)."""
        if message.stream is None:
            raise InvalidArgumentError(
                "publish needs Message(stream=...); use publish_to_subject for a subject"
            )
        message._check_no_ack_inbox()
        return self.client.publish(
            message.stream,
            message.value,
            key=message.key,
            headers=message.headers,
            partition=message.partition,
            ack_policy=message.ack_policy,
            correlation_id=message.correlation_id,
        )

    def publish_to_subject(self, message: Message) -> Ack | None:
        """Publish to NATS subject ``message.subject``; every stream on it stores it.

        With ``partition=N`` (N > 0) it goes to ``<subject>.N``, the subject
        partition N of a stream on ``subject`` listens to.
        """
        if message.subject is None:
            raise InvalidArgumentError("publish_to_subject needs Message(subject=...)")
        message._check_no_ack_inbox()
        subject = message.subject
        if message.partition:
            subject = f"{subject}.{message.partition}"
        return self.client.publish_to_subject(
            subject,
            message.value,
            key=message.key,
            headers=message.headers,
            ack_policy=message.ack_policy,
            correlation_id=message.correlation_id,
        )

    def subscribe(self, stream: Stream, timeout: float | None = None) -> Iterator[Message]:
        """Messages of ``stream`` from its start position on, as they arrive.

        Lazy, like python-liftbridge's: nothing is sent until the first
        ``next()``. The iteration follows new messages until the client is
        closed, or until ``timeout`` seconds have passed when given.

        Raises:
            ErrNoSuchStream: no such stream (NoSuchPartitionError for a
                missing partition).
        """
        with self.client.subscribe(
            stream.name, partition=stream.subscribe_to_partition, start_at=stream._start_at()
        ) as subscription:
            timer = None
            if timeout is not None:
                timer = threading.Timer(timeout, subscription.close)
                timer.daemon = True
                timer.start()
            try:
                for message in subscription:
                    yield Message._received(message)
            finally:
                if timer is not None:
                    timer.cancel()

    def fetch_metadata(self) -> Metadata:
        """The cluster's brokers and streams."""
        return self.client.fetch_metadata()

    def close(self) -> None:
        """Close the connection; subscriptions end."""
        self.client.close()

    def __enter__(self) -> Lift:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Lift(ip_address={self.ip_address!r})"
