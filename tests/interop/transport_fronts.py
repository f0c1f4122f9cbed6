"""Run one transport scenario through either front end.

A scenario is an ``async def scenario(channel)`` written against the asyncio
API (:class:`~pyliftbridge._async.channel.AsyncChannel`). For the blocking
front end the channel is wrapped in :class:`SyncAsAsync`, whose coroutines
simply call the blocking methods: the scenario then drives the real
:class:`~pyliftbridge._sync.channel.Channel` and its reader thread, and the
event loop it runs in is only a way to share the scenario's text. Scenarios
that need concurrency (threads against tasks) are written per front end.

This module must not import grpc: the tests against non-gRPC peers and the
Liftbridge integration tests use it on PyPy too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Iterable
from typing import Any, Callable, TypeVar

from pyliftbridge._async.channel import AsyncChannel
from pyliftbridge._options import ChannelOptions, TLSConfig
from pyliftbridge._status import Metadata, Status
from pyliftbridge._sync.channel import Call, Channel

__all__ = ["FRONT_ENDS", "SyncAsAsync", "SyncCallAsAsync", "open_channel", "run"]

#: The two front ends; tests parametrize over these ids.
FRONT_ENDS = ("sync", "async")

T = TypeVar("T")


class SyncCallAsAsync:
    """A blocking :class:`Call` with the coroutine interface of ``AsyncCall``."""

    def __init__(self, call: Call) -> None:
        self.call = call

    @property
    def status(self) -> Status | None:
        return self.call.status

    @property
    def initial_metadata(self) -> Metadata:
        return self.call.initial_metadata

    @property
    def done(self) -> bool:
        return self.call.done

    async def send(self, payload: bytes, *, end: bool = False, flush: bool = True) -> None:
        self.call.send(payload, end=end, flush=flush)

    def flush(self) -> None:
        self.call.flush()

    async def end(self) -> None:
        self.call.end()

    async def recv(self, timeout: float | None = None) -> bytes | None:
        return self.call.recv(timeout)

    def cancel(self, message: str = "call cancelled by the client") -> None:
        self.call.cancel(message)

    def close(self) -> None:
        self.call.close()

    async def aclose(self) -> None:
        self.call.close()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        for message in self.call:
            yield message

    async def __aenter__(self) -> SyncCallAsAsync:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.call.close()


class SyncAsAsync:
    """A blocking :class:`Channel` with the coroutine interface of ``AsyncChannel``."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    @property
    def options(self) -> ChannelOptions:
        return self.channel.options

    async def unary(
        self,
        path: str,
        request: bytes,
        *,
        timeout: float | None,
        metadata: Iterable[tuple[str, Any]] = (),
    ) -> bytes:
        return self.channel.unary(path, request, timeout=timeout, metadata=metadata)

    async def open_call(
        self,
        path: str,
        *,
        timeout: float | None = None,
        metadata: Iterable[tuple[str, Any]] = (),
    ) -> SyncCallAsAsync:
        return SyncCallAsAsync(self.channel.open_call(path, timeout=timeout, metadata=metadata))

    async def server_stream(
        self,
        path: str,
        request: bytes,
        *,
        timeout: float | None = None,
        metadata: Iterable[tuple[str, Any]] = (),
    ) -> SyncCallAsAsync:
        call = self.channel.server_stream(path, request, timeout=timeout, metadata=metadata)
        return SyncCallAsAsync(call)

    async def close(self) -> None:
        self.channel.close()


def open_channel(
    front: str,
    address: str,
    *,
    tls: TLSConfig | None = None,
    options: ChannelOptions | None = None,
) -> Any:
    """A channel of front end ``front`` with the asyncio interface.

    For ``"async"`` this must be called inside a running event loop.
    """
    if front == "sync":
        return SyncAsAsync(Channel(address, tls=tls, options=options))
    if front == "async":
        return AsyncChannel(address, tls=tls, options=options)
    raise ValueError(f"unknown front end {front!r}")


def run(
    front: str,
    address: str,
    scenario: Callable[[Any], Awaitable[T]],
    *,
    tls: TLSConfig | None = None,
    options: ChannelOptions | None = None,
    timeout: float = 30.0,
) -> T:
    """Open a channel, run ``scenario(channel)`` in a fresh event loop, close the channel."""

    async def main() -> T:
        channel = open_channel(front, address, tls=tls, options=options)
        try:
            return await asyncio.wait_for(scenario(channel), timeout)
        finally:
            await channel.close()

    return asyncio.run(main())
