"""Pipelined publishing over long-lived PublishAsync streams (asyncio flavour).

Every publish, also the waiting ``publish()``, goes out on a PublishAsync bidi
stream: the unary Publish RPC drops acks unless it carries a deadline, and a
stream lets many messages share few DATA frames. A publish is "pending" from
the moment it is queued until its ack (or error) arrives, its ack timeout
passes, the stream breaks or the client closes; in each case its future is
resolved exactly once. Nothing is re-sent behind the caller's back: a message
whose fate is unknown fails with an error saying so. (The exception is one
that provably was not written: see ``acks_received`` on NOT_FOUND.) Acks are
resolved by the stream's MessageSink, on the connection's reader thread or in
the protocol callback, so they never wait for another thread or task.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .._codec import read_publish_response
from .._stats import PublishCounters
from ..errors import (
    AckTimeoutError,
    LiftbridgeError,
    NoSuchPartitionError,
    UnavailableError,
)
from ..models import Ack
from ._backend import Future, Lock, Mutex, monotonic
from ._connection import AsyncCall

if TYPE_CHECKING:
    from ._publishing import AsyncPublishing

__all__ = ["PendingPublish", "PublishStream"]

log = logging.getLogger("pyliftbridge.publish")

_PUBLISH_ASYNC = "/proto.API/PublishAsync"


#: Times a publish refused with NOT_FOUND is sent again (see ``acks_received``).
NOT_FOUND_RETRIES = 4
#: Seconds before the first of them; each further one waits twice as long.
NOT_FOUND_BACKOFF = 0.05


class PendingPublish:
    """A publish waiting for its ack."""

    __slots__ = (
        "correlation_id",
        "deadline",
        "future",
        "partition",
        "payload",
        "retries",
        "retry_at",
        "sent_at",
        "stream",
    )

    def __init__(
        self,
        future: Future[Any],
        stream: str,
        partition: int,
        correlation_id: str,
        deadline: float,
        payload: bytes,
        sent_at: float,
    ) -> None:
        self.future = future
        self.stream = stream
        self.partition = partition
        self.correlation_id = correlation_id
        self.deadline = deadline
        #: The serialized request, kept for a resend after NOT_FOUND.
        self.payload = payload
        self.retries = 0
        self.retry_at = 0.0
        #: When the caller published it (for the ack latency).
        self.sent_at = sent_at


class PublishStream:
    """One PublishAsync stream to one broker, reopened after it breaks."""

    def __init__(self, owner: AsyncPublishing, address: str) -> None:
        self._owner = owner
        self.address = address
        self._call: AsyncCall | None = None
        self._pending: dict[str, PendingPublish] = {}
        #: Publishes refused with NOT_FOUND, waiting to be sent again.
        self._retrying: list[PendingPublish] = []
        self._mutex = Mutex()
        self._open_lock = Lock()
        #: Statistics, changed under ``_mutex``.
        self._counters = PublishCounters()

    def stats(self) -> tuple[PublishCounters, int]:
        """A copy of this stream's counters, and how many of its publishes are in flight."""
        copy = PublishCounters()
        with self._mutex:
            copy.add(self._counters)
            return copy, len(self._pending) + len(self._retrying)

    def pending_futures(self) -> list[Future[Any]]:
        """Futures of every pending publish."""
        with self._mutex:
            return [p.future for p in (*self._pending.values(), *self._retrying)]

    async def _ensure_call(self) -> AsyncCall:
        call = self._call
        if call is not None and not call.done:
            return call
        async with self._open_lock:
            call = self._call
            if call is not None and not call.done:
                return call
            channel = self._owner.channel(self.address)
            try:
                call = await channel.open_call(_PUBLISH_ASYNC)
            except LiftbridgeError as exc:
                self._owner.count_rpc("PublishAsync", exc)
                raise
            self._owner.count_rpc("PublishAsync", None)
            log.debug("PublishAsync: opened a publish stream to %s", self.address)
            self._call = call
            # Acks are resolved where they are read (the reader thread, or
            # the protocol callback), not handed to another thread or task.
            call.set_sink(_AckSink(self, call))
            return call

    async def send(
        self, payload: bytes, pending: PendingPublish | None, *, write_now: bool = False
    ) -> None:
        """Queue one serialized PublishRequest; ``pending`` waits for its ack.

        ``pending`` is registered in the same step as the message is queued
        (under the lock the ack handler takes), so its ack cannot be missed
        and a stream that breaks fails it exactly once. A message that
        provably never left (the stream had already ended when it was
        queued) is sent again once on a fresh stream; any other failure is
        raised to the caller. ``write_now`` writes it before returning;
        otherwise the connection's writer sends it with whatever else is
        queued by then.
        """
        for attempt in (0, 1):
            call = await self._ensure_call()
            with self._mutex:
                try:
                    call.queue(payload)
                except LiftbridgeError:
                    if self._call is call:
                        self._call = None
                    if attempt:
                        raise
                    continue
                counters = self._counters
                if pending is None:
                    counters.sent += 1
                    counters.no_ack += 1
                else:
                    self._pending[pending.correlation_id] = pending
                    if pending.retries:
                        counters.resent += 1
                    else:
                        counters.sent += 1
            if write_now:
                call.flush()
            else:
                call.flush_soon()
            return

    def acks_received(self, payloads: list[bytes]) -> None:
        """Resolve the publishes that ``payloads`` (PublishResponses) answer.

        A broker answers NOT_FOUND for a stream whose creation it has not
        applied yet (a publish right after ``create_stream`` on a cluster can
        reach such a broker). The message was refused before anything was
        written, so it is sent again a few times, backing off, within its
        ack timeout; a stream that really does not exist fails after that.
        Only while nothing later to the same partition is in flight, though:
        a later message stored first would break the partition's order, so
        then the refusal is the caller's to handle.
        """
        answers = [read_publish_response(data) for data in payloads]
        answered = []
        retry = []
        with self._mutex:
            pop = self._pending.pop
            counters = self._counters
            started: list[float] = []
            acked = started.append
            for answer in answers:
                # None: timed out already, or an ack for another client's inbox.
                pending = pop(answer[0], None)
                if pending is None:
                    continue
                error = answer[3]
                if error is None:
                    acked(pending.sent_at)
                elif type(error) is NoSuchPartitionError and self._may_retry(pending):
                    retry.append(pending)
                    continue
                else:
                    counters.fail(type(error))
                answered.append((pending, answer))
            counters.acked += len(started)
            counters.latency.record_since(monotonic(), started)
            self._retrying.extend(retry)
        if retry:
            self._owner.wake_for_retries()
        resolve = self._owner.resolve
        for pending, (cid, offset, source, error) in answered:
            if error is None:
                resolve(pending, Ack(source, pending.partition, offset, cid))
            else:
                resolve(pending, None, error)
        self._owner.release_slots(len(answered))

    def _may_retry(self, pending: PendingPublish) -> bool:
        # Called with the mutex held.
        if pending.retries >= NOT_FOUND_RETRIES:
            return False
        retry_at = monotonic() + NOT_FOUND_BACKOFF * 2**pending.retries
        if retry_at >= pending.deadline:
            return False
        stream, partition = pending.stream, pending.partition
        for other in self._pending.values():
            if other.partition == partition and other.stream == stream:
                return False
        pending.retries += 1
        pending.retry_at = retry_at
        return True

    async def resend_due(self, now: float) -> float | None:
        """Send again the refused publishes that are due; return the next one's time."""
        with self._mutex:
            due = [p for p in self._retrying if p.retry_at <= now]
            self._retrying = [p for p in self._retrying if p.retry_at > now]
            later = min((p.retry_at for p in self._retrying), default=None)
        failed = 0
        for pending in due:
            try:
                await self.send(pending.payload, pending, write_now=True)
            except LiftbridgeError as exc:
                with self._mutex:
                    self._counters.fail(type(exc))
                self._owner.resolve(pending, None, exc)
                failed += 1
        self._owner.release_slots(failed)
        return later

    def broken(self, call: AsyncCall, error: LiftbridgeError, *, connection_lost: bool) -> None:
        """Fail every publish pending on ``call``, which has ended.

        After a lost connection new publishes look the partition leader up
        again rather than reconnect to a broker that may be gone.
        """
        if connection_lost:
            self._owner.unreachable(self.address)
        with self._mutex:
            if self._call is call:
                self._call = None
            lost = list(self._pending.values())
            self._pending.clear()
            # Publishes waiting for a resend are not on any stream: they stay.
            if lost:
                self._counters.fail(UnavailableError, len(lost))
        if lost:
            log.info(
                "PublishAsync: publish stream to %s broke with %d publishes awaiting acks: %s",
                self.address,
                len(lost),
                error,
            )
        call.close()
        for pending in lost:
            self._owner.resolve(
                pending,
                None,
                UnavailableError(
                    f"publish stream to {self.address} broke before the ack of "
                    f"{pending.correlation_id!r} arrived; the message may or may not "
                    f"have been written ({error})"
                ),
            )
        self._owner.release_slots(len(lost))

    def expire(self, now: float) -> float | None:
        """Fail publishes whose ack timeout passed; return the next deadline."""
        expired = []
        earliest: float | None = None
        with self._mutex:
            for cid, pending in list(self._pending.items()):
                if pending.deadline <= now:
                    expired.append(self._pending.pop(cid))
                elif earliest is None or pending.deadline < earliest:
                    earliest = pending.deadline
            if expired:
                self._counters.fail(AckTimeoutError, len(expired))
        for pending in expired:
            self._owner.resolve(
                pending,
                None,
                AckTimeoutError(
                    f"no ack for publish {pending.correlation_id!r} to stream "
                    f"{pending.stream!r} partition {pending.partition} within the ack "
                    "timeout; the message may or may not have been written"
                ),
            )
        self._owner.release_slots(len(expired))
        return earliest

    def fail_all(self, error: LiftbridgeError) -> None:
        """Resolve every pending publish with ``error`` and drop the stream."""
        with self._mutex:
            lost = [*self._pending.values(), *self._retrying]
            self._pending.clear()
            self._retrying = []
            if lost:
                self._counters.fail(type(error), len(lost))
            call, self._call = self._call, None
        for pending in lost:
            self._owner.resolve(pending, None, error)
        self._owner.release_slots(len(lost))
        if call is not None:
            call.close()


class _AckSink:
    """Where one PublishAsync call's responses go (a MessageSink)."""

    __slots__ = ("_call", "_stream")

    def __init__(self, stream: PublishStream, call: AsyncCall) -> None:
        self._stream = stream
        self._call = call

    def on_messages(self, messages: list[bytes]) -> None:
        try:
            self._stream.acks_received(messages)
        except Exception as exc:  # a bug must not leave publishers waiting forever
            log.exception("PublishAsync: ack handling for %s failed", self._stream.address)
            self._stream.broken(
                self._call,
                UnavailableError(f"publish ack handling failed: {exc!r}"),
                connection_lost=False,
            )

    def on_end(self, error: LiftbridgeError | None) -> None:
        if error is None:
            error = UnavailableError(
                f"publish stream to {self._stream.address} was ended by the server"
            )
            self._stream.broken(self._call, error, connection_lost=False)
        else:
            self._stream.broken(
                self._call, error, connection_lost=isinstance(error, UnavailableError)
            )
