"""Pipelined publishing over long-lived PublishAsync streams (asyncio flavour).

Every publish, also the waiting ``publish()``, goes out on a PublishAsync bidi
stream: the unary Publish RPC drops acks unless it carries a deadline, and a
stream lets many messages share few DATA frames. A publish is "pending" from
the moment it is queued until its ack (or error) arrives, its ack timeout
passes, the stream breaks or the client closes; in each case its future is
resolved exactly once. Nothing is re-sent behind the caller's back: a message
whose fate is unknown fails with an error saying so.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .._pb import api_pb2
from .._requests import correlation_id_of, publish_response_error
from ..errors import (
    AckTimeoutError,
    LiftbridgeError,
    UnavailableError,
)
from ..models import Ack
from ._backend import Future, Lock, Mutex
from ._connection import AsyncCall

if TYPE_CHECKING:
    from .client import AsyncClient

__all__ = ["PendingPublish", "PublishStream"]

log = logging.getLogger("pyliftbridge")

_PUBLISH_ASYNC = "/proto.API/PublishAsync"


class PendingPublish:
    """A publish waiting for its ack."""

    __slots__ = ("correlation_id", "deadline", "future", "partition", "stream")

    def __init__(
        self, future: Future[Any], stream: str, partition: int, correlation_id: str, deadline: float
    ) -> None:
        self.future = future
        self.stream = stream
        self.partition = partition
        self.correlation_id = correlation_id
        self.deadline = deadline


class PublishStream:
    """One PublishAsync stream to one broker, reopened after it breaks."""

    def __init__(self, client: AsyncClient, address: str) -> None:
        self._client = client
        self.address = address
        self._call: AsyncCall | None = None
        self._pending: dict[str, PendingPublish] = {}
        self._mutex = Mutex()
        self._open_lock = Lock()

    def pending_futures(self) -> list[Future[Any]]:
        """Futures of every pending publish."""
        with self._mutex:
            return [p.future for p in self._pending.values()]

    async def _ensure_call(self) -> AsyncCall:
        call = self._call
        if call is not None and not call.done:
            return call
        async with self._open_lock:
            call = self._call
            if call is not None and not call.done:
                return call
            channel = self._client._channel(self.address)
            call = await channel.open_call(_PUBLISH_ASYNC)
            self._call = call
            self._client._spawn_worker(self._read_loop, call, name=f"publish-acks-{self.address}")
            return call

    async def send(self, request: api_pb2.PublishRequest, pending: PendingPublish | None) -> None:
        """Queue one request; ``pending`` is registered before it can be acked.

        A message that provably never left (the stream had already ended when
        it was queued) is sent again once on a fresh stream; any other failure
        is raised to the caller.
        """
        payload = request.SerializeToString()
        for attempt in (0, 1):
            call = await self._ensure_call()
            if pending is not None:
                with self._mutex:
                    self._pending[pending.correlation_id] = pending
            try:
                await call.send(payload, flush=False)
            except LiftbridgeError:
                if pending is not None:
                    with self._mutex:
                        self._pending.pop(pending.correlation_id, None)
                with self._mutex:
                    if self._call is call:
                        self._call = None
                if attempt:
                    raise
                continue
            call.flush_soon()
            return

    async def _read_loop(self, call: AsyncCall) -> None:
        error: LiftbridgeError
        try:
            while True:
                data = await call.recv()
                if data is None:
                    error = UnavailableError(
                        f"publish stream to {self.address} was ended by the server"
                    )
                    break
                response = api_pb2.PublishResponse.FromString(data)
                with self._mutex:
                    pending = self._pending.pop(correlation_id_of(response), None)
                if pending is None:
                    continue  # timed out already, or an ack for another client's inbox
                failure = publish_response_error(response)
                if failure is not None:
                    self._client._resolve(pending, error=failure)
                else:
                    self._client._resolve(
                        pending, ack=Ack.from_proto(response.ack, pending.partition)
                    )
        except LiftbridgeError as exc:
            error = exc
        except Exception as exc:  # a bug must not leave publishers waiting forever
            log.exception("publish ack reader for %s failed", self.address)
            error = UnavailableError(f"publish ack reader failed: {exc!r}")
        with self._mutex:
            if self._call is call:
                self._call = None
            lost = list(self._pending.values())
            self._pending.clear()
        call.close()
        for pending in lost:
            self._client._resolve(
                pending,
                error=UnavailableError(
                    f"publish stream to {self.address} broke before the ack of "
                    f"{pending.correlation_id!r} arrived; the message may or may not "
                    f"have been written ({error})"
                ),
            )

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
        for pending in expired:
            self._client._resolve(
                pending,
                error=AckTimeoutError(
                    f"no ack for publish {pending.correlation_id!r} to stream "
                    f"{pending.stream!r} partition {pending.partition} within the ack "
                    "timeout; the message may or may not have been written"
                ),
            )
        return earliest

    def fail_all(self, error: LiftbridgeError) -> None:
        """Resolve every pending publish with ``error`` and drop the stream."""
        with self._mutex:
            lost = list(self._pending.values())
            self._pending.clear()
            call, self._call = self._call, None
        for pending in lost:
            self._client._resolve(pending, error=error)
        if call is not None:
            call.close()
