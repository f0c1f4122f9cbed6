"""What stands behind the client's publish methods (asyncio flavour).

Partition choice, which publish stream a partition goes out on, the
in-flight limit (backpressure), correlation ids, ack timeouts, and
resolving each publish exactly once. The client keeps the public methods
and their documentation; the streams themselves are in ``_publisher``.
"""

from __future__ import annotations

import contextlib
import logging
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._codec import encode_publish_request
from .._ids import CorrelationIds
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
from ._backend import Future, Mutex, Semaphore, monotonic, new_future, sleep, wait_future
from ._publisher import PendingPublish, PublishStream

if TYPE_CHECKING:
    from .channel import AsyncChannel
    from .client import AsyncClient

__all__ = ["AsyncPublishing"]

log = logging.getLogger("pyliftbridge.publish")

#: Seconds a broker that refused or lost a publish stream is passed over
#: (unless fresh metadata names it leader again after that).
_UNREACHABLE_FOR = 2.0

#: Longest sleep of the ack-timeout worker (it also wakes when the client closes).
_EXPIRY_TICK = 0.25

#: First pause between metadata look-ups while a partition has no reachable
#: leader, and the longest (the pause doubles).
_ROUTE_PAUSE = 0.05
_ROUTE_PAUSE_MAX = 0.2


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
        #: Streams whose metadata is being looked up in the background.
        self._looking_up: set[str] = set()
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
        timeout: float,
    ) -> int:
        if partition is not None:
            if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
                raise InvalidArgumentError(f"partition must be an int >= 0, not {partition!r}")
            return partition
        if partitioner is None:
            return 0
        metadata = self._client._metadata
        if metadata is None or stream not in metadata.streams:
            metadata = await self._client._refresh_metadata([stream], timeout)
            if stream not in metadata.streams:
                raise NoSuchStreamError(f"stream {stream!r} does not exist")
        count = metadata.partition_count(stream)
        chosen = partitioner(stream, key, value, count)
        if not isinstance(chosen, int) or (count and not 0 <= chosen < count):
            raise InvalidArgumentError(
                f"partitioner returned {chosen!r} for a stream of {count} partitions"
            )
        return chosen

    def _leader_of(self, metadata: Metadata | None, stream: str, partition: int) -> str | None:
        """The partition leader's address as ``metadata`` names it; "" when it names
        the partition without a leader; None when it does not know the partition."""
        info = None if metadata is None else metadata.streams.get(stream)
        part = None if info is None else info.partitions.get(partition)
        if part is None:
            return None
        leader = part.leader
        if leader is None or not leader.host:
            return ""
        return self._client._translate(leader.address)

    def _stream_for(self, stream: str, partition: int, fresh: bool = False) -> PublishStream | None:
        """The publish stream to use now, or None to look again after fresh metadata.

        A partition's messages go to its leader, as go-liftbridge sends them:
        any broker would forward a publish over NATS, but while a partition
        has no leader such a message is dropped silently and can only time
        out, whereas the leader's connection breaking fails its pending
        publishes at once (fate unknown) and new ones wait (in ``_route``)
        for the next leader. A partition the cached metadata does not know
        yet goes to any broker, which answers for it (NOT_FOUND for a stream
        that does not exist), while its metadata is looked up in the
        background. ``fresh`` (metadata just looked up) overrides a broker's
        recent failure. The choice is remembered until the metadata is
        replaced.
        """
        key = (stream, partition)
        metadata = self._client._metadata
        if self._routes_for is metadata:
            cached = self._routes.get(key)
            if cached is not None:
                return cached
        address = self._leader_of(metadata, stream, partition)
        if address == "":
            return None  # no leader: an election
        if address is None:
            if not fresh:
                self._look_up_soon(stream)
            addresses = sorted(self._client._broker_addresses())
            address = addresses[zlib.crc32(f"{stream}:{partition}".encode()) % len(addresses)]
        elif not fresh and self._unreachable.get(address, 0.0) > monotonic():
            return None  # the leader just failed: look again
        with self._mutex:
            publisher = self._streams.get(address)
            if publisher is None:
                publisher = self._streams[address] = PublishStream(self, address)
            if self._routes_for is not metadata:
                self._routes = {}
                self._routes_for = metadata
            self._routes[key] = publisher
            return publisher

    def _look_up_soon(self, stream: str) -> None:
        with self._mutex:
            if stream in self._looking_up:
                return
            self._looking_up.add(stream)
        self._client._spawn_worker(self._look_up, stream, name=f"publish-lookup-{stream}")

    async def _look_up(self, stream: str) -> None:
        try:
            await self._client._refresh_metadata([stream])
        except LiftbridgeError as exc:
            log.debug("FetchMetadata of %r for its publishes failed: %s", stream, exc)
        finally:
            with self._mutex:
                self._looking_up.discard(stream)

    def unreachable(self, address: str) -> None:
        """``address`` refused a publish stream or lost it: route around it a while."""
        with self._mutex:
            self._unreachable[address] = monotonic() + _UNREACHABLE_FOR
            self._routes = {}

    async def _route(
        self, stream: str, partition: int, deadline: float, *, after_failure: bool
    ) -> PublishStream:
        """The publish stream for the partition, after fresh metadata (until ``deadline``)."""
        pause = _ROUTE_PAUSE
        wait = after_failure
        while True:
            remaining = deadline - monotonic()
            if remaining <= 0:
                raise UnavailableError(
                    f"partition {stream}/{partition} had no reachable leader within the ack "
                    "timeout; the message was not sent"
                )
            if wait:
                # A leader just failed, or none is named yet (an election).
                await sleep(min(pause, remaining))
                pause = min(pause * 2, _ROUTE_PAUSE_MAX)
            wait = True
            with contextlib.suppress(LiftbridgeError):  # looked up again until the deadline
                await self._client._refresh_metadata([stream], max(0.01, deadline - monotonic()))
            publisher = self._stream_for(stream, partition, fresh=True)
            if publisher is not None:
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
            wait = self.ack_timeout if timeout is None else timeout
            if partition is None or type(partition) is not int or partition < 0:
                # The stream's partition count may need a lookup: within the
                # publish's own deadline, like the rest of it.
                started = monotonic()
                chosen = await self._partition_for(
                    stream, key_bytes, value_bytes, partition, partitioner, wait
                )
                wait = max(0.0, wait - (monotonic() - started))
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
            if not await self._inflight.acquire(wait):
                raise AckTimeoutError(
                    f"no publish slot freed within {wait:.1f}s "
                    "(max_inflight_publishes publishes are awaiting acks)"
                )
            future: Future[Ack | None] = new_future()
            pending = None
            now = monotonic()
            if ack_policy != AckPolicy.NONE:
                pending = PendingPublish(future, stream, chosen, cid, now + wait, payload, now)
            deadline = now + wait
            failed = False
            try:
                while True:
                    publisher = None if failed else self._stream_for(stream, chosen)
                    if publisher is None:
                        publisher = await self._route(
                            stream, chosen, deadline, after_failure=failed
                        )
                    try:
                        await publisher.send(payload, pending, write_now=write_now)
                        break
                    except UnavailableError as exc:
                        # send() fails only for a message that never left: find
                        # the partition's (new) leader and send it there.
                        log.info(
                            "PublishAsync to %s failed (%s); looking up the leader of %s/%d",
                            publisher.address,
                            exc,
                            stream,
                            chosen,
                        )
                        self.unreachable(publisher.address)
                        failed = True
                        if monotonic() >= deadline:
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
