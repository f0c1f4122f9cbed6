"""Subscriptions to one stream partition (asyncio flavour).

A subscription is an iterator of :class:`~pyliftbridge.models.Message`. It
opens a Subscribe call on the partition leader (or an in-sync replica),
consumes the server's empty handshake message, and then yields messages.
When the connection breaks or leadership moves, it subscribes again at the
last offset + 1 (or with the original start position when nothing arrived
yet) for up to ``resubscribe_wait``, so no message is lost or repeated.
Reaching the stop position or the end of a readonly partition ends the
iteration normally.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING

from .._codec import read_message
from .._pb import api_pb2
from .._requests import map_subscribe_error, start_after, subscription_ends_normally
from ..errors import (
    ClientClosedError,
    DeadlineExceededError,
    LiftbridgeError,
    NoSuchPartitionError,
    NotLeaderError,
    ProtocolError,
    StopPositionReachedError,
    UnavailableError,
)
from ..models import Message
from ._backend import Queue, monotonic, sleep, spawn
from ._connection import AsyncCall

if TYPE_CHECKING:
    from .client import AsyncClient

__all__ = ["AsyncMergedSubscription", "AsyncSubscription"]

log = logging.getLogger("pyliftbridge.subscribe")

_SUBSCRIBE = "/proto.API/Subscribe"
#: Errors after which the partition is looked up again and the subscription reopened.
_RESUBSCRIBE_ON = (UnavailableError, NotLeaderError)
#: Most messages a merged subscription's reader hands over at once.
_BATCH = 64


class AsyncSubscription:
    """Messages of one stream partition, in offset order.

    Use it as an async iterator; close it (or leave its ``async with`` block)
    to stop. Iteration ends normally at the stop position or at the end of a
    readonly partition, and with an error for anything else.
    """

    def __init__(
        self, client: AsyncClient, request: api_pb2.SubscribeRequest, resubscribe_wait: float
    ) -> None:
        self._client = client
        self._request = request
        self._resubscribe_wait = resubscribe_wait
        self._call: AsyncCall | None = None
        #: Messages received and not yet returned (wire bytes).
        self._buffer: deque[bytes] = deque()
        self._last_offset: int | None = None
        self._closed = False
        self._finished = False
        #: Stream this subscription reads.
        self.stream = request.stream
        #: Partition this subscription reads.
        self.partition = request.partition
        #: Messages received so far (changed only by the reading task or thread).
        self.messages_received = 0
        #: Times it subscribed again.
        self.resubscribes = 0
        self._telemetry = client._telemetry
        #: The broker it reads from (its latest one).
        self.address = ""

    @property
    def last_offset(self) -> int | None:
        """Offset of the last message returned, None before the first."""
        return self._last_offset

    async def _open(self, timeout: float) -> None:
        """Subscribe (with retries on a stale leader) and consume the handshake."""
        request = self._request
        if self._last_offset is not None:
            request = start_after(request, self._last_offset)
        payload = request.SerializeToString()
        deadline = monotonic() + timeout
        attempt = 0
        address = "(leader unknown)"
        while True:
            if self._closed:
                raise ClientClosedError("subscription closed")
            try:
                # Every step shares the deadline: the leader lookup (which may
                # refresh metadata) and the wait for the handshake.
                address = await self._client._partition_address(
                    request.stream,
                    request.partition,
                    isr=request.readISRReplica,
                    refresh=attempt > 0,
                    timeout=deadline - monotonic(),
                )
                channel = self._client._channel(address)
                try:
                    call = await channel.server_stream(_SUBSCRIBE, payload)
                except LiftbridgeError as exc:
                    self._client._count_rpc("Subscribe", exc)
                    raise
                try:
                    try:
                        handshake = await call.recv(timeout=max(0.0, deadline - monotonic()))
                    except TimeoutError:
                        raise DeadlineExceededError(
                            f"no subscribe handshake from {address} within {timeout:.1f}s"
                        ) from None
                    if handshake is None:
                        raise ProtocolError("subscription ended before its handshake")
                    if handshake:
                        raise ProtocolError("subscribe handshake was not an empty message")
                except LiftbridgeError as exc:
                    call.close()
                    self._client._count_rpc("Subscribe", exc)
                    raise
                except BaseException:
                    call.close()
                    raise
                self._client._count_rpc("Subscribe", None)
                self.address = address
                self._call = call
                return
            except LiftbridgeError as exc:
                error = map_subscribe_error(exc, handshake=True)
                if subscription_ends_normally(error):
                    # e.g. stop_at="latest" on an empty partition: nothing to read.
                    self._finished = True
                    return
                attempt += 1
                if isinstance(error, _RESUBSCRIBE_ON) and monotonic() < deadline and attempt < 10:
                    log.debug(
                        "Subscribe on %s (for %s/%d) failed (%s); retrying",
                        address,
                        self.stream,
                        self.partition,
                        error,
                    )
                    # Jittered, so that many subscribers do not retry in step.
                    backoff = (0.01 + 0.05 * attempt) * random.uniform(0.5, 1.5)
                    await sleep(min(backoff, max(0.0, deadline - monotonic())))
                    continue
                if error is exc:
                    raise
                raise error from exc

    def __aiter__(self) -> AsyncSubscription:
        return self

    async def __anext__(self) -> Message:
        while True:
            if self._finished or self._closed:
                raise StopAsyncIteration
            if self._buffer:
                message = self._next_buffered()
                if message is not None:
                    return message
                continue
            call = self._call
            if call is None:
                await self._resubscribe(None)
                continue
            try:
                batch = await call.recv_batch()
            except LiftbridgeError as exc:
                if self._closed:
                    raise StopAsyncIteration from None
                error = map_subscribe_error(exc, handshake=False)
                if subscription_ends_normally(error):
                    self._finish()
                    raise StopAsyncIteration from None
                if isinstance(error, _RESUBSCRIBE_ON):
                    self._drop_call()
                    await self._resubscribe(error)
                    continue
                self._finish()
                if error is exc:
                    raise
                raise error from exc
            if batch is None:
                # The server ended the subscription without an error (a consumer
                # group member was replaced, or the server is shutting down).
                self._finish()
                raise StopAsyncIteration
            # Everything that arrived at once is taken in one step (one lock,
            # one flow-control update) and handed out from here.
            self._buffer.extend(batch)
            self.messages_received += len(batch)

    def _next_buffered(self) -> Message | None:
        """The next buffered message; None when it was a repeat (dropped)."""
        try:
            message = read_message(self._buffer.popleft())
        except LiftbridgeError:
            # Malformed bytes from the server: nothing after them can be trusted.
            self._finish()
            raise
        last = self._last_offset
        if last is not None and message.offset <= last:
            # Already delivered. Liftbridge v1.9.0 starts a subscription whose
            # start offset is above the leader's high watermark at the
            # watermark instead: a new leader's watermark lags behind what the
            # old one committed, so a resubscription after a failover begins
            # with messages this iterator already returned.
            log.debug(
                "%s/%d: dropped offset %d (already delivered up to %d)",
                self.stream,
                self.partition,
                message.offset,
                last,
            )
            return None
        self._last_offset = message.offset
        telemetry = self._telemetry
        if telemetry is not None and telemetry.receive_spans:
            telemetry.received(message)
        return message

    def take_buffered(self, limit: int) -> list[Message]:
        """Up to ``limit`` messages that have arrived already, without waiting."""
        taken: list[Message] = []
        while self._buffer and len(taken) < limit and not self._closed:
            message = self._next_buffered()
            if message is not None:
                taken.append(message)
        return taken

    async def _resubscribe(self, cause: LiftbridgeError | None) -> None:
        """Reopen the subscription within ``resubscribe_wait`` or raise."""
        give_up = monotonic() + self._resubscribe_wait
        last: LiftbridgeError | None = cause
        while not self._closed:
            remaining = give_up - monotonic()
            if remaining <= 0:
                break
            try:
                await self._open(min(remaining, self._client._timeout))
                self.resubscribes += 1
                log.info(
                    "Subscribe: resubscribed to %s/%d on %s after %s",
                    self.stream,
                    self.partition,
                    self.address,
                    cause or "close",
                )
                return
            except StopPositionReachedError:
                # Everything up to the stop offset was delivered before the break.
                self._finish()
                raise StopAsyncIteration from None
            except (*_RESUBSCRIBE_ON, DeadlineExceededError, NoSuchPartitionError) as exc:
                # "No such partition" while resubscribing to a partition that
                # was being read: a broker just restarted after a failover
                # answers so until it has loaded its partitions (metadata can
                # still name it the leader). A deleted stream runs into the
                # resubscribe_wait limit.
                log.debug(
                    "Subscribe: resubscribing to %s/%d failed (%s); retrying",
                    self.stream,
                    self.partition,
                    exc,
                )
                last = exc
            # go-liftbridge waits 1 s plus up to 0.5 s of jitter between attempts.
            await sleep(min(1.0 + random.random() * 0.5, max(0.0, give_up - monotonic())))
        self._finish()
        if self._closed:
            raise StopAsyncIteration
        raise UnavailableError(
            f"could not resubscribe to {self.stream}/{self.partition} within "
            f"{self._resubscribe_wait:.0f}s: {last}"
        )

    def _drop_call(self) -> None:
        call, self._call = self._call, None
        if call is not None:
            call.close()

    def _finish(self) -> None:
        self._finished = True
        self._drop_call()
        self._client._forget_subscription(self)

    async def close(self) -> None:
        """Stop the subscription; iteration ends. Safe to call more than once."""
        self._closed = True
        self._finish()

    async def __aenter__(self) -> AsyncSubscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


_DONE = object()


class AsyncMergedSubscription:
    """Messages of every partition of a stream, interleaved as they arrive.

    Order holds within a partition, not across partitions. At most about
    ``buffer`` messages wait here unread; past that the per-partition readers
    stop reading, so HTTP/2 flow control slows the server down (backpressure
    is kept). Iteration ends when every partition's subscription has ended,
    and raises the first error any of them hits (closing the rest).
    """

    def __init__(self, subscriptions: list[AsyncSubscription], buffer: int = 1024) -> None:
        self._subscriptions = subscriptions
        # Readers hand over what arrived together, up to _BATCH messages at a
        # time: one queue operation per batch rather than per message.
        self._queue = Queue(max(1, buffer // _BATCH))
        self._batch: deque[Message] = deque()
        self._running = len(subscriptions)
        self._closed = False
        # One partition needs no reader of its own: it is read directly.
        self._direct = subscriptions[0] if len(subscriptions) == 1 else None
        self._workers = (
            []
            if self._direct is not None
            else [
                spawn(self._pump, s, name=f"pyliftbridge-merge-{s.stream}-{s.partition}")
                for s in subscriptions
            ]
        )

    @property
    def partitions(self) -> list[int]:
        """The partitions being read."""
        return [s.partition for s in self._subscriptions]

    async def _pump(self, subscription: AsyncSubscription) -> None:
        try:
            async for message in subscription:
                await self._queue.put([message, *subscription.take_buffered(_BATCH - 1)])
        except LiftbridgeError as exc:
            await self._queue.put(exc)
        finally:
            await self._queue.put(_DONE)

    def __aiter__(self) -> AsyncMergedSubscription:
        return self

    async def __anext__(self) -> Message:
        if self._direct is not None:
            if self._closed:
                raise StopAsyncIteration
            return await self._direct.__anext__()
        while not self._closed:
            if self._batch:
                return self._batch.popleft()
            if not self._running:
                break
            item = await self._queue.get()
            if item is _DONE:
                self._running -= 1
                continue
            if isinstance(item, LiftbridgeError):
                await self.close()
                raise item
            self._batch.extend(item)
        raise StopAsyncIteration

    async def close(self) -> None:
        """Stop every partition's subscription."""
        if self._closed:
            return
        self._closed = True
        for subscription in self._subscriptions:
            await subscription.close()
        # Unblock readers waiting on a full buffer, then let them finish.
        while not all(worker.done() for worker in self._workers):
            with contextlib.suppress(TimeoutError):
                await self._queue.get(timeout=0.05)

    async def __aenter__(self) -> AsyncMergedSubscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
