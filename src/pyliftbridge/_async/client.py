"""The Liftbridge client (asyncio flavour; the blocking ``Client`` is generated from it).

Routing: metadata is cached and refreshed when a call meets stale routing
and periodically. Admin calls and publishes may go to any broker (the server
forwards them); Subscribe, FetchPartitionMetadata and cursor calls go to the
leader of the partition concerned. Calls are retried, until their deadline,
on errors that mean "try again, maybe elsewhere": UNAVAILABLE, "no known
metadata leader" and, for leader-bound calls, "not the leader".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, TypeVar, Union

from google.protobuf.message import Message as _PbMessage

from .._address import parse_address
from .._groups import AutoOffset, FetchInterval
from .._options import ChannelOptions, TLSConfig
from .._pb import api_pb2
from .._requests import (
    ack_error,
    create_stream_request,
    cursor_request,
    partition_of_ack,
    publish_to_subject_request,
    subscribe_request,
    to_bytes,
)
from .._stats import ClientStats, SubscriptionStats, frozen_counts
from ..errors import (
    ClientClosedError,
    InvalidArgumentError,
    LiftbridgeError,
    RpcError,
)
from ..models import Ack, AckPolicy, ActivityEvent, Metadata, PartitionInfo
from ..partitioners import Partitioner, cursors_partition
from . import _opening
from ._backend import (
    Event,
    Future,
    Mutex,
    Worker,
    monotonic,
    spawn,
    wait_future,
)
from ._calls import AddressMap, AsyncCalls
from ._publishing import AsyncPublishing
from ._subscription import AsyncMergedSubscription, AsyncSubscription
from .channel import AsyncChannel

if TYPE_CHECKING:
    from ..telemetry import Telemetry
    from ._consumer import AsyncConsumer

__all__ = ["AsyncClient"]

log = logging.getLogger("pyliftbridge.client")

_R = TypeVar("_R", bound=_PbMessage)

StartAt = Union[str, int, datetime, timedelta]
StopAt = Union[str, int, datetime, None]

_CURSORS_STREAM = "__cursors"
_ACTIVITY_STREAM = "__activity"


class AsyncClient(AsyncCalls):
    """A Liftbridge client for asyncio.

    Args:
        brokers: one ``"host:port"`` or several; any one that answers is enough.
        timeout: deadline, in seconds, of every call that does not take its own.
        tls: TLS settings (None: plaintext).
        ack_timeout: how long a publish waits for its ack (default 5 s).
        resubscribe_wait: how long a subscription keeps trying to resubscribe
            after a connection loss or leader change (default 30 s).
        metadata_refresh_interval: seconds between background metadata
            refreshes; None disables them.
        max_inflight_publishes: publishes awaiting their ack at once; further
            ``publish_async`` calls wait (backpressure).
        address_map: rewrites broker addresses advertised in metadata
            (a mapping or a function), for brokers behind NAT or advertising
            ``localhost``.
        options: transport settings (message sizes, windows, keepalive...).
        stats_interval: seconds between calls of ``on_stats``.
        on_stats: called with a :class:`~pyliftbridge.ClientStats` every
            ``stats_interval`` seconds (from a background thread, or task),
            like librdkafka's statistics callback; see :meth:`stats`.
        telemetry: OpenTelemetry spans, trace context in message headers and
            metrics (a :class:`pyliftbridge.telemetry.Telemetry`; needs the
            ``otel`` extra). None: nothing is traced.
    """

    def __init__(
        self,
        brokers: str | Sequence[str],
        *,
        timeout: float = 10.0,
        tls: TLSConfig | None = None,
        ack_timeout: float = 5.0,
        resubscribe_wait: float = 30.0,
        metadata_refresh_interval: float | None = 60.0,
        max_inflight_publishes: int = 1024,
        address_map: AddressMap = None,
        options: ChannelOptions | None = None,
        stats_interval: float | timedelta | None = None,
        on_stats: Callable[[ClientStats], object] | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        seeds = [brokers] if isinstance(brokers, str) else list(brokers)
        if not seeds:
            raise InvalidArgumentError("at least one broker address is needed")
        for seed in seeds:
            parse_address(seed)  # fail early on a malformed address
        for name, value in (("timeout", timeout), ("ack_timeout", ack_timeout)):
            if value <= 0:
                raise InvalidArgumentError(f"{name} must be positive")
        if resubscribe_wait < 0:
            raise InvalidArgumentError("resubscribe_wait must not be negative")
        if max_inflight_publishes < 1:
            raise InvalidArgumentError("max_inflight_publishes must be at least 1")
        if isinstance(stats_interval, timedelta):
            stats_interval = stats_interval.total_seconds()
        if (stats_interval is None) != (on_stats is None):
            raise InvalidArgumentError("stats_interval and on_stats go together")
        if stats_interval is not None and stats_interval <= 0:
            raise InvalidArgumentError("stats_interval must be positive")
        self._seeds = seeds
        self._timeout = timeout
        self._tls = tls
        self._resubscribe_wait = resubscribe_wait
        self._refresh_interval = metadata_refresh_interval
        self._address_map = address_map
        self._options = options or ChannelOptions()
        self._mutex = Mutex()
        self._channels: dict[str, AsyncChannel] = {}
        self._subscriptions: set[AsyncSubscription] = set()
        self._metadata: Metadata | None = None
        self._publishing = AsyncPublishing(self, ack_timeout, max_inflight_publishes)
        self._workers: list[Worker] = []
        self._wakeup = Event()
        #: Set when the ack-timeout worker should look before its next tick.
        self._expiry_due = Event()
        self._closed = False
        self._started = False
        self._stats_interval = stats_interval
        self._on_stats = on_stats
        # Statistics kept here (all changed under ``_mutex``; the busy ones
        # are kept by the publish streams, connections and subscriptions).
        self._started_at = datetime.now(timezone.utc)
        #: (method, status name) -> calls.
        self._rpc_counts: dict[tuple[str, str], int] = {}
        self._metadata_refreshes = 0
        self._metadata_refresh_failures = 0
        #: Messages and resubscribes of subscriptions already closed.
        self._closed_consumed = 0
        self._closed_resubscribes = 0
        self._telemetry = telemetry
        if telemetry is not None:
            telemetry.attach(self.stats)

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the client.

        Pending publishes fail with :class:`ClientClosedError`, subscriptions
        end, background work stops and every connection is closed. Safe to
        call more than once.
        """
        if self._closed:
            return
        self._closed = True
        self._wakeup.set()
        self._expiry_due.set()
        self._publishing.fail_all(
            ClientClosedError("the client was closed before the publish was acknowledged")
        )
        for subscription in list(self._subscriptions):
            await subscription.close()
        for channel in list(self._channels.values()):
            await channel.close()
        for worker in self._workers:
            await worker.join(5.0)
        self._workers.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("the client is closed")
        if not self._started:
            with self._mutex:
                if self._started:
                    return
                self._started = True
                self._spawn_worker(self._ack_timeout_loop, name="ack-timeouts")
                if self._refresh_interval is not None:
                    self._spawn_worker(self._refresh_loop, name="metadata-refresh")
                if self._stats_interval is not None:
                    self._spawn_worker(self._stats_loop, name="stats")

    def _spawn_worker(self, target: Callable[..., Any], *args: Any, name: str) -> None:
        with self._mutex:
            self._workers = [w for w in self._workers if not w.done()]
            self._workers.append(spawn(target, *args, name=f"pyliftbridge-{name}"))

    async def _refresh_loop(self) -> None:
        interval = self._refresh_interval
        assert interval is not None
        while not self._closed:
            if await self._wakeup.wait(interval):
                return
            try:
                await self._refresh_metadata()
            except LiftbridgeError as exc:
                log.warning("background FetchMetadata failed on every broker: %s", exc)

    async def _stats_loop(self) -> None:
        interval = self._stats_interval
        callback = self._on_stats
        assert interval is not None and callback is not None
        while not self._closed:
            if await self._wakeup.wait(interval):
                return
            try:
                callback(self.stats())
            except Exception:  # the application's bug must not stop the statistics
                log.exception("on_stats callback failed")

    async def _ack_timeout_loop(self) -> None:
        while not self._closed:
            # Cleared first, so a wake-up that comes while expire() runs is kept.
            self._expiry_due.clear()
            wait = await self._publishing.expire(monotonic())
            await self._expiry_due.wait(wait)

    def _wake_expiry(self) -> None:
        self._expiry_due.set()

    # ------------------------------------------------------------ metadata

    async def fetch_metadata(
        self, streams: Iterable[str] | None = None, *, timeout: float | None = None
    ) -> Metadata:
        """Fetch cluster metadata (all streams, or just ``streams``) and update the cache."""
        names = [] if streams is None else list(streams)
        return await self._refresh_metadata(names, timeout)

    async def fetch_partition_metadata(
        self, stream: str, partition: int, *, timeout: float | None = None
    ) -> PartitionInfo:
        """Fetch one partition's metadata from its leader (includes ``readonly``).

        A paused partition has no leader to ask (the server refuses with "not
        the leader" until it is resumed): its entry in the cluster metadata,
        which says ``paused=True``, is returned instead.
        """
        request = api_pb2.FetchPartitionMetadataRequest(stream=stream, partition=partition)
        paused: list[PartitionInfo] = []

        def answer_paused(info: PartitionInfo) -> api_pb2.FetchPartitionMetadataResponse:
            paused.append(info)
            return api_pb2.FetchPartitionMetadataResponse()

        response = await self._call_leader(
            stream,
            partition,
            "FetchPartitionMetadata",
            request,
            api_pb2.FetchPartitionMetadataResponse,
            timeout,
            paused=answer_paused,
        )
        if paused:
            return paused[0]
        metadata = self._metadata
        brokers = {} if metadata is None else {b.id: b for b in metadata.brokers}
        return PartitionInfo.from_proto(response.metadata, stream, brokers)

    # --------------------------------------------------------------- admin

    async def create_stream(
        self,
        subject: str,
        name: str,
        *,
        group: str | None = None,
        replication_factor: int = 1,
        max_replication: bool = False,
        partitions: int = 1,
        retention_max_bytes: int | None = None,
        retention_max_messages: int | None = None,
        retention_max_age: timedelta | None = None,
        cleaner_interval: timedelta | None = None,
        segment_max_bytes: int | None = None,
        segment_max_age: timedelta | None = None,
        compact_max_goroutines: int | None = None,
        compact_enabled: bool | None = None,
        auto_pause_time: timedelta | None = None,
        auto_pause_disable_if_subscribers: bool | None = None,
        min_isr: int | None = None,
        optimistic_concurrency_control: bool | None = None,
        encryption: bool | None = None,
        timeout: float | None = None,
    ) -> None:
        """Create a stream attached to NATS ``subject``; None options keep server defaults.

        Raises:
            StreamExistsError: a stream with that name exists.
            InvalidArgumentError: the server or this client rejected an option.
        """
        request = create_stream_request(
            subject,
            name,
            group=group,
            replication_factor=replication_factor,
            max_replication=max_replication,
            partitions=partitions,
            retention_max_bytes=retention_max_bytes,
            retention_max_messages=retention_max_messages,
            retention_max_age=retention_max_age,
            cleaner_interval=cleaner_interval,
            segment_max_bytes=segment_max_bytes,
            segment_max_age=segment_max_age,
            compact_max_goroutines=compact_max_goroutines,
            compact_enabled=compact_enabled,
            auto_pause_time=auto_pause_time,
            auto_pause_disable_if_subscribers=auto_pause_disable_if_subscribers,
            min_isr=min_isr,
            optimistic_concurrency_control=optimistic_concurrency_control,
            encryption=encryption,
        )
        await self._call_any("CreateStream", request, api_pb2.CreateStreamResponse, timeout)

    async def delete_stream(self, name: str, *, timeout: float | None = None) -> None:
        """Delete a stream. Raises NoSuchStreamError when there is none."""
        request = api_pb2.DeleteStreamRequest(name=name)
        await self._call_any("DeleteStream", request, api_pb2.DeleteStreamResponse, timeout)
        with self._mutex:
            self._metadata = None

    async def pause_stream(
        self,
        name: str,
        partitions: Iterable[int] | None = None,
        resume_all: bool = False,
        *,
        timeout: float | None = None,
    ) -> None:
        """Pause some (default: all) partitions of a stream.

        A paused partition resumes when published to; with ``resume_all`` a
        publish to one partition resumes them all.
        """
        request = api_pb2.PauseStreamRequest(
            name=name, partitions=list(partitions or ()), resumeAll=resume_all
        )
        await self._call_any("PauseStream", request, api_pb2.PauseStreamResponse, timeout)

    async def set_stream_readonly(
        self,
        name: str,
        partitions: Iterable[int] | None = None,
        readonly: bool = True,
        *,
        timeout: float | None = None,
    ) -> None:
        """Make some (default: all) partitions readonly, or writable again."""
        request = api_pb2.SetStreamReadonlyRequest(
            name=name, partitions=list(partitions or ()), readonly=readonly
        )
        await self._call_any(
            "SetStreamReadonly", request, api_pb2.SetStreamReadonlyResponse, timeout
        )

    # ------------------------------------------------------------- publish

    async def publish_async(
        self,
        stream: str,
        value: bytes | str,
        *,
        key: bytes | str | None = None,
        headers: Mapping[str, bytes | str] | None = None,
        partition: int | None = None,
        partitioner: Partitioner | None = None,
        ack_policy: AckPolicy = AckPolicy.LEADER,
        expected_offset: int | None = None,
        correlation_id: str | None = None,
        timeout: float | None = None,
    ) -> Future[Ack | None]:
        """Send a message to a stream without waiting for its ack.

        Returns a future resolved with the :class:`~pyliftbridge.models.Ack`
        (None for ``AckPolicy.NONE``, resolved as soon as the message is
        written to the connection) or with the error: AckTimeoutError after
        ``timeout`` (default: the client's ``ack_timeout``), a typed
        rejection (IncorrectOffsetError, ReadonlyPartitionError...), or
        UnavailableError when the connection broke before the ack came. When
        ``max_inflight_publishes`` are pending this waits for a free slot.

        Futures are resolved where acks are read: with the blocking client,
        done-callbacks run on the connection's reader thread. Keep them
        short, and do not wait there for another publish (its ack would have
        to be read by that same thread). asyncio schedules them on the loop.
        """
        return await self._publishing.publish(
            stream,
            value,
            key,
            headers,
            partition,
            partitioner,
            ack_policy,
            expected_offset,
            correlation_id,
            timeout,
            write_now=False,
        )

    async def publish(
        self,
        stream: str,
        value: bytes | str,
        *,
        key: bytes | str | None = None,
        headers: Mapping[str, bytes | str] | None = None,
        partition: int | None = None,
        partitioner: Partitioner | None = None,
        ack_policy: AckPolicy = AckPolicy.LEADER,
        expected_offset: int | None = None,
        correlation_id: str | None = None,
        timeout: float | None = None,
    ) -> Ack | None:
        """Publish a message and wait for its ack (None with ``AckPolicy.NONE``).

        Raises:
            AckTimeoutError: no ack within ``timeout`` (default ``ack_timeout``).
            IncorrectOffsetError: ``expected_offset`` did not match.
            ReadonlyPartitionError: the partition is readonly.
            NoSuchPartitionError: the stream has no such partition.
            MessageTooLargeError: the message is too large for the server.
            EncryptionError: the server could not encrypt the message.
            UnavailableError: the connection broke before the ack arrived.
        """
        # Written at once rather than by the writer: the caller waits anyway,
        # and a hand-off to another thread would add to its latency.
        future = await self._publishing.publish(
            stream,
            value,
            key,
            headers,
            partition,
            partitioner,
            ack_policy,
            expected_offset,
            correlation_id,
            timeout,
            write_now=True,
        )
        result: Ack | None = await wait_future(future)
        return result

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every publish made so far is acked or failed.

        Raises:
            DeadlineExceededError: ``timeout`` passed first.
        """
        await self._publishing.flush(timeout)

    async def publish_to_subject(
        self,
        subject: str,
        value: bytes | str,
        *,
        key: bytes | str | None = None,
        headers: Mapping[str, bytes | str] | None = None,
        ack_policy: AckPolicy = AckPolicy.LEADER,
        correlation_id: str | None = None,
        timeout: float | None = None,
    ) -> Ack | None:
        """Publish to a NATS subject; every stream on it gets the message.

        Returns the first stream's ack (None with ``AckPolicy.NONE``).
        """
        policy = AckPolicy(ack_policy)
        request = publish_to_subject_request(
            subject,
            to_bytes(value, "value"),
            key=None if key is None else to_bytes(key, "key"),
            headers=headers,
            ack_policy=policy,
            correlation_id=correlation_id or self._publishing.ids.next(),
        )
        wait = self._publishing.ack_timeout if timeout is None else timeout
        response = await self._call_any(
            "PublishToSubject", request, api_pb2.PublishToSubjectResponse, wait
        )
        if policy is AckPolicy.NONE or not response.HasField("ack"):
            return None
        ack = response.ack
        # v1.9.0 returns PublishToSubject acks without looking at their error.
        failure = ack_error(ack)
        if failure is not None:
            raise failure
        return Ack.from_proto(ack, partition_of_ack(ack.partitionSubject, ack.msgSubject))

    # ------------------------------------------------------------ subscribe

    def subscribe(
        self,
        stream: str,
        *,
        partition: int = 0,
        start_at: StartAt = "new",
        stop_at: StopAt = None,
        read_isr_replica: bool = False,
        resume: bool = False,
        timeout: float | None = None,
    ) -> _opening.Opening[AsyncSubscription]:
        """Subscribe to one partition; returns an iterator of messages.

        ``start_at``: ``"new"`` (only messages published from now on),
        ``"earliest"``, ``"latest"`` (the newest message, then new ones), an
        offset, a ``datetime``, or a ``timedelta`` (that long ago).
        ``stop_at``: None (follow forever), ``"latest"``, an offset or a
        ``datetime``; the iteration ends there.

        Use it as ``async with client.subscribe(...) as sub:``, or
        ``sub = await client.subscribe(...)`` and close it yourself.

        Raises:
            NoSuchPartitionError: no such stream or partition.
            UnavailableError: no leader (or in-sync replica) could be reached.
        """
        return _opening.opening(
            self._subscribe(
                stream,
                partition=partition,
                start_at=start_at,
                stop_at=stop_at,
                read_isr_replica=read_isr_replica,
                resume=resume,
                timeout=timeout,
            )
        )

    async def _subscribe(
        self,
        stream: str,
        *,
        partition: int,
        start_at: StartAt,
        stop_at: StopAt,
        read_isr_replica: bool,
        resume: bool,
        timeout: float | None,
    ) -> AsyncSubscription:
        self._check_open()
        request = subscribe_request(
            stream,
            partition,
            start_at=start_at,
            stop_at=stop_at,
            read_isr_replica=read_isr_replica,
            resume=resume,
            now_ns=time.time_ns(),
        )
        subscription = AsyncSubscription(self, request, self._resubscribe_wait)
        await subscription._open(self._timeout if timeout is None else timeout)
        with self._mutex:
            self._subscriptions.add(subscription)
        return subscription

    def subscribe_all(
        self,
        stream: str,
        *,
        start_at: StartAt = "new",
        stop_at: StopAt = None,
        read_isr_replica: bool = False,
        resume: bool = False,
        buffer: int = 1024,
        timeout: float | None = None,
    ) -> _opening.Opening[AsyncMergedSubscription]:
        """Subscribe to every partition of a stream; one iterator of all their messages.

        Order holds within each partition. ``buffer`` bounds the messages
        held unread (backpressure applies beyond it). Other arguments, and
        the ways to use the result, are as for :meth:`subscribe`, applied to
        each partition.
        """
        return _opening.opening(
            self._subscribe_all(
                stream,
                start_at=start_at,
                stop_at=stop_at,
                read_isr_replica=read_isr_replica,
                resume=resume,
                buffer=buffer,
                timeout=timeout,
            )
        )

    async def _subscribe_all(
        self,
        stream: str,
        *,
        start_at: StartAt,
        stop_at: StopAt,
        read_isr_replica: bool,
        resume: bool,
        buffer: int,
        timeout: float | None,
    ) -> AsyncMergedSubscription:
        self._check_open()
        # One deadline for the lookup and every partition's subscription.
        deadline = monotonic() + (self._timeout if timeout is None else timeout)
        metadata = await self._refresh_metadata([stream], deadline - monotonic())
        partitions = sorted(metadata.stream(stream).partitions)
        subscriptions: list[AsyncSubscription] = []
        try:
            for partition in partitions:
                subscriptions.append(
                    await self._subscribe(
                        stream,
                        partition=partition,
                        start_at=start_at,
                        stop_at=stop_at,
                        read_isr_replica=read_isr_replica,
                        resume=resume,
                        timeout=deadline - monotonic(),
                    )
                )
        except BaseException:
            for subscription in subscriptions:
                await subscription.close()
            raise
        return AsyncMergedSubscription(subscriptions, buffer)

    def _forget_subscription(self, subscription: AsyncSubscription) -> None:
        with self._mutex:
            if subscription in self._subscriptions:
                self._subscriptions.discard(subscription)
                self._closed_consumed += subscription.messages_received
                self._closed_resubscribes += subscription.resubscribes

    # ---------------------------------------------------------- statistics

    def stats(self) -> ClientStats:
        """An immutable snapshot of this client's counters since it was created.

        Cheap enough to call often (it adds up a few counters per broker and
        per subscription); see :class:`~pyliftbridge.ClientStats`.
        """
        with self._mutex:
            rpcs: dict[str, dict[str, int]] = {}
            for (method, status), n in self._rpc_counts.items():
                rpcs.setdefault(method, {})[status] = n
            subscriptions = sorted(
                self._subscriptions, key=lambda s: (s.stream, s.partition, id(s))
            )
            consumed = self._closed_consumed + sum(s.messages_received for s in subscriptions)
            resubscribes = self._closed_resubscribes + sum(s.resubscribes for s in subscriptions)
            channels = sorted(self._channels.items())
            refreshes = self._metadata_refreshes
            refresh_failures = self._metadata_refresh_failures
        return ClientStats(
            started_at=self._started_at,
            taken_at=datetime.now(timezone.utc),
            publishes=self._publishing.stats(),
            rpcs=frozen_counts({m: frozen_counts(c) for m, c in rpcs.items()}),
            brokers=tuple(channel.stats() for _, channel in channels),
            metadata_refreshes=refreshes,
            metadata_refresh_failures=refresh_failures,
            resubscribes=resubscribes,
            messages_consumed=consumed,
            subscriptions=tuple(
                SubscriptionStats(s.stream, s.partition, s.messages_received, s.resubscribes)
                for s in subscriptions
            ),
        )

    def activity(
        self,
        *,
        start_at: StartAt = "earliest",
        deduplicate: bool = True,
        timeout: float | None = None,
    ) -> _opening.Opening[AsyncActivityStream]:
        """Follow the cluster's activity stream (stream created, deleted, paused...).

        Needs ``activity.stream.enabled`` on the server. The server publishes
        each event at least once: when it fails to record that an event went
        out (a Raft timeout, a new metadata leader) it publishes the same event
        again, with the same :attr:`ActivityEvent.id`. With ``deduplicate``
        (the default) the iterator drops every event whose id is not greater
        than the last one it yielded, so each change is seen once. The result
        is used as that of :meth:`subscribe`.
        """
        return _opening.opening(self._activity(start_at, deduplicate, timeout))

    async def _activity(
        self, start_at: StartAt, deduplicate: bool, timeout: float | None
    ) -> AsyncActivityStream:
        subscription = await self._subscribe(
            _ACTIVITY_STREAM,
            partition=0,
            start_at=start_at,
            stop_at=None,
            read_isr_replica=False,
            resume=False,
            timeout=timeout,
        )
        return AsyncActivityStream(subscription, deduplicate=deduplicate)

    # -------------------------------------------------------------- cursors

    async def _cursor_call(
        self,
        method: str,
        request: api_pb2.SetCursorRequest | api_pb2.FetchCursorRequest,
        response_type: type[_R],
        timeout: float | None,
    ) -> _R:
        """Call a cursor RPC on the leader of the ``__cursors`` partition holding it.

        The lookup of that partition and the call share one deadline.
        """
        self._check_open()
        budget = self._timeout if timeout is None else timeout
        deadline = monotonic() + budget
        target = await self._cursor_partition(
            request.cursorId, request.stream, request.partition, budget
        )
        return await self._call_leader(
            _CURSORS_STREAM, target, method, request, response_type, deadline - monotonic()
        )

    async def _cursor_partition(
        self, cursor_id: str, stream: str, partition: int, timeout: float
    ) -> int:
        metadata = self._metadata
        if metadata is None or _CURSORS_STREAM not in metadata.streams:
            metadata = await self._refresh_metadata(timeout=timeout)
        count = metadata.partition_count(_CURSORS_STREAM)
        if count == 0:
            raise RpcError(
                "the cursors stream does not exist: start the server with "
                "cursors.stream.partitions > 0"
            )
        return cursors_partition(cursor_id, stream, partition, count)

    async def set_cursor(
        self,
        cursor_id: str,
        stream: str,
        partition: int,
        offset: int,
        *,
        timeout: float | None = None,
    ) -> None:
        """Store ``offset`` as cursor ``cursor_id``'s position in a partition.

        ``offset`` is -1 or more; -1 clears the position (:meth:`fetch_cursor`
        then answers -1, as for a cursor never set).

        Raises:
            InvalidArgumentError: an empty id or stream, a negative partition,
                an offset below -1 (refused before anything is sent).
        """
        request = cursor_request(cursor_id, stream, partition, offset)
        await self._cursor_call("SetCursor", request, api_pb2.SetCursorResponse, timeout)

    async def fetch_cursor(
        self, cursor_id: str, stream: str, partition: int, *, timeout: float | None = None
    ) -> int:
        """Return cursor ``cursor_id``'s stored offset in a partition, -1 when none."""
        request = cursor_request(cursor_id, stream, partition)
        response = await self._cursor_call(
            "FetchCursor", request, api_pb2.FetchCursorResponse, timeout
        )
        return int(response.offset)

    # ------------------------------------------------------ consumer groups

    def create_consumer(
        self,
        group_id: str,
        *,
        consumer_id: str | None = None,
        auto_checkpoint: timedelta | float | None = timedelta(seconds=5),
        auto_offset: AutoOffset = "new",
        fetch_interval: FetchInterval = None,
        buffer: int = 1024,
    ) -> AsyncConsumer:
        """A new member of consumer group ``group_id``; call its ``subscribe`` to start.

        ``consumer_id``: the member's id (default: a random one).
        ``auto_checkpoint``: how often consumed positions are stored (None:
        only by ``checkpoint()``, on rebalance and on close).
        ``auto_offset``: where to start in a partition the group has no
        stored position for: ``"new"`` (messages from now on), ``"earliest"``,
        ``"latest"``, or ``"none"`` (the iterator raises ConsumerGroupError).
        ``fetch_interval``: seconds between assignment fetches (the
        heartbeat), or a function of the server's consumer timeout; default
        0.4 times that timeout. ``buffer``: messages held unread (backpressure).
        Needs a server with cursors enabled (``cursors.stream.partitions``).
        """
        if self._closed:
            raise ClientClosedError("the client is closed")
        # Imported here: consumer groups load only for programs that use them.
        from ._consumer import AsyncConsumer

        return AsyncConsumer(
            self,
            group_id,
            consumer_id=consumer_id,
            auto_checkpoint=auto_checkpoint,
            auto_offset=auto_offset,
            fetch_interval=fetch_interval,
            buffer=buffer,
        )


class AsyncActivityStream:
    """Iterator of :class:`~pyliftbridge.models.ActivityEvent` from ``__activity``."""

    def __init__(self, subscription: AsyncSubscription, *, deduplicate: bool = True) -> None:
        self._subscription = subscription
        self._deduplicate = deduplicate
        self._last_id = -1

    def __aiter__(self) -> AsyncActivityStream:
        return self

    async def __anext__(self) -> ActivityEvent:
        while True:
            message = await self._subscription.__anext__()
            event = ActivityEvent.from_message(message)
            # Event ids are Raft indexes, so a repeat never has a larger id.
            if self._deduplicate and event.id <= self._last_id:
                log.debug(
                    "activity: dropped repeated event %d (%s) at offset %d",
                    event.id,
                    event.op.name,
                    event.offset,
                )
                continue
            self._last_id = event.id
            return event

    async def close(self) -> None:
        """Stop following the activity stream."""
        await self._subscription.close()

    async def __aenter__(self) -> AsyncActivityStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
