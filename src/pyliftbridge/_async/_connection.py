"""asyncio front end of the gRPC transport: an ``asyncio.Protocol`` per connection.

This module only moves bytes and wakes tasks; every protocol decision is made
by :class:`~pyliftbridge._core.connection.GrpcConnection`. Everything runs on
the event loop thread, so the core needs no lock: no ``await`` ever sits
between reading the core's state and acting on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Any, Callable

from .._core.connection import GrpcConnection
from .._core.events import (
    CallEnded,
    ConnectionTerminated,
    Event,
    MessageReceived,
    ResponseHeaders,
)
from .._core.inbox import EMPTY, CallInbox, MessageSink, remaining_time
from .._core.keepalive import KeepaliveAction, KeepalivePolicy
from .._core.metadata import MetadataValue
from .._options import ChannelOptions, TLSConfig
from .._status import Metadata, Status, StatusCode
from ..errors import (
    LiftbridgeError,
    UnavailableError,
)

__all__ = ["SEND_HIGH_WATER", "AsyncCall"]

log = logging.getLogger("pyliftbridge.transport")

#: Outbound bytes a call may have queued before ``send`` waits for the window.
SEND_HIGH_WATER = 1024 * 1024


def _unavailable(message: str) -> UnavailableError:
    # A connection that cannot be opened or has broken fails calls with the
    # same status as the core gives a call cut off in flight, so that
    # ``err.code``/``err.status`` do not depend on which side of the race the
    # call was on (before the fix these errors had no status at all).
    return UnavailableError(message, status=Status(StatusCode.UNAVAILABLE, message))


class AsyncCall:
    """One gRPC call on an :class:`AsyncChannel` (unary, server- or bidi-streaming).

    ``async for`` over it yields response messages; the iteration ends when
    the call ends with OK and raises the mapped error otherwise.
    """

    def __init__(self, conn: _AsyncConnection, call_id: int, deadline: float | None) -> None:
        self._conn = conn
        self.call_id = call_id
        self._deadline = deadline
        self._inbox = CallInbox()
        self._wakeup = asyncio.Event()
        self._released = False

    def _deliver(self, event: Event) -> None:
        inbox = self._inbox
        inbox.deliver(event)
        if inbox.sink is None:
            self._wakeup.set()
        else:
            self._conn.sink_ready[self] = None

    def set_sink(self, sink: MessageSink) -> None:
        """Hand every message to ``sink`` as it arrives (instead of :meth:`recv`).

        The sink runs in the protocol's callbacks, one batch per read.
        """
        self._inbox.sink = sink
        if self._inbox.pending_messages or self._inbox.done:
            self._conn.sink_ready[self] = None
            self._conn.run_sinks()

    @property
    def done(self) -> bool:
        """True once the call has ended (messages may still be unread)."""
        return self._inbox.done

    @property
    def status(self) -> Status | None:
        """How the call ended; None while it runs."""
        return self._inbox.status

    @property
    def initial_metadata(self) -> Metadata:
        """The server's response metadata (empty until it arrives)."""
        return self._inbox.initial_metadata

    @property
    def transparent_retry(self) -> bool:
        """True when the server provably never saw the call."""
        return self._inbox.transparent_retry

    async def send(self, payload: bytes, *, end: bool = False, flush: bool = True) -> None:
        """Queue one request message; ``flush=False`` lets several coalesce.

        Waits (up to the deadline) while more than ``SEND_HIGH_WATER`` bytes
        are held back by flow control or the transport's write buffer is full.
        """
        conn = self._conn
        self._inbox.check_sendable()
        conn.core.send_message(self.call_id, payload, end=end)
        conn.messages_sent += 1
        if flush:
            conn.flush()
            await self._wait_writable()

    def queue(self, payload: bytes) -> None:
        """Queue one request message to be written by the next flush.

        Raises:
            LiftbridgeError: the call already ended (its mapped error), or the
                message is too large.
        """
        self._inbox.check_sendable()
        conn = self._conn
        conn.core.send_message(self.call_id, payload)
        conn.messages_sent += 1

    def flush(self) -> None:
        """Write everything queued on the connection."""
        self._conn.flush()

    def flush_soon(self) -> None:
        """Write what is queued once the current task yields, so sends coalesce."""
        self._conn.flush_soon()

    async def end(self) -> None:
        """Half-close: no more request messages."""
        if not self._inbox.done:
            self._conn.core.end_send(self.call_id)
        self._conn.flush()

    async def _wait_writable(self) -> None:
        conn = self._conn
        while conn.core.outbound_pending(self.call_id) > SEND_HIGH_WATER or conn.write_paused:
            self._inbox.check_sendable()
            await self._wait(None)

    async def _wait(self, until: float | None) -> None:
        """Wait for news on this call (or until loop time ``until``); expire it at its deadline."""
        self._wakeup.clear()
        remaining = remaining_time(self._deadline, until, asyncio.get_running_loop().time())
        if remaining is None:
            await self._wakeup.wait()
            return
        try:
            await asyncio.wait_for(self._wakeup.wait(), remaining)
        except asyncio.TimeoutError:
            loop_time = asyncio.get_running_loop().time()
            if self._deadline is not None and loop_time >= self._deadline:
                self._expire()
                return
            raise TimeoutError("no message within the timeout") from None

    async def recv(self, timeout: float | None = None) -> bytes | None:
        """Return the next response message, or None when the call ended OK.

        Raises:
            DeadlineExceededError: the call's deadline passed.
            TimeoutError: ``timeout`` passed first (the call goes on).
            LiftbridgeError: the call ended with an error status.
        """
        item: bytes | None = await self._receive(self._inbox.take, timeout)
        return item

    async def recv_batch(self, timeout: float | None = None) -> list[bytes] | None:
        """Every response message that has arrived (at least one; waits for it).

        None when the call ended OK; raises as :meth:`recv` does.
        """
        items: list[bytes] | None = await self._receive(self._inbox.take_batch, timeout)
        return items

    async def _receive(
        self, take: Callable[[GrpcConnection, int], tuple[Any, bool]], timeout: float | None
    ) -> Any:
        conn = self._conn
        # Fixed once: every read on the connection wakes every call, and a
        # timeout restarted on each wake-up would never expire on a busy one.
        until = None if timeout is None else asyncio.get_running_loop().time() + timeout
        while True:
            item, flush = take(conn.core, self.call_id)
            if flush:
                conn.flush()
            if item is not EMPTY:
                return item
            await self._wait(until)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while True:
            message = await self.recv()
            if message is None:
                return
            yield message

    def cancel(self, message: str = "call cancelled by the client") -> None:
        """Cancel the call (RST_STREAM CANCEL); pending receivers get CancelledError."""
        for event in self._conn.core.cancel(self.call_id, StatusCode.CANCELLED, message):
            self._deliver(event)
        self._conn.flush()

    def close(self) -> None:
        """Cancel the call if it is still running and release its resources."""
        if self._released:
            return
        self._released = True
        conn = self._conn
        for event in conn.core.cancel(self.call_id):
            self._deliver(event)
        conn.core.release(self.call_id)
        conn.calls.pop(self.call_id, None)
        conn.flush()

    async def __aenter__(self) -> AsyncCall:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _expire(self) -> None:
        for event in self._conn.core.cancel(
            self.call_id, StatusCode.DEADLINE_EXCEEDED, "deadline exceeded"
        ):
            self._deliver(event)
        self._conn.flush()


class _AsyncConnection(asyncio.Protocol):
    """One HTTP/2 connection: an asyncio transport and a GrpcConnection."""

    def __init__(
        self,
        host: str,
        port: int,
        options: ChannelOptions,
        secure: bool,
        keepalive: KeepalivePolicy | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.options = options
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.core = GrpcConnection(
            authority,
            scheme="https" if secure else "http",
            max_receive_message_size=options.max_receive_message_size,
            max_send_message_size=options.max_send_message_size,
            stream_window=options.stream_window,
            connection_window=options.connection_window,
            user_agent=options.user_agent,
        )
        self.calls: dict[int, AsyncCall] = {}
        #: Calls with a sink and news for it (an ordered set).
        self.sink_ready: dict[AsyncCall, None] = {}
        self.dead: LiftbridgeError | None = None
        self.write_paused = False
        self._flush_scheduled = False
        self._transport: asyncio.Transport | None = None
        #: Keepalive policy; a channel passes the next connection ``keepalive.renewed()``.
        self.keepalive = keepalive or KeepalivePolicy(
            options.keepalive_interval,
            timeout=options.keepalive_timeout,
            min_interval=options.keepalive_min_interval,
        )
        self._keepalive_handle: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        # Statistics (read by the channel; only the event loop changes them).
        self.bytes_sent = 0
        self.bytes_received = 0
        self.messages_sent = 0
        self.messages_received = 0
        #: True once the connection broke (not closed by us or a graceful GOAWAY).
        self.lost = False

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        options: ChannelOptions,
        tls: TLSConfig | None,
        keepalive: KeepalivePolicy | None = None,
    ) -> _AsyncConnection:
        loop = asyncio.get_running_loop()
        ssl_ctx = tls.build_context() if tls is not None else None
        server_hostname = (tls.server_hostname or host) if tls is not None else None
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: cls(host, port, options, tls is not None, keepalive),
                    host,
                    port,
                    ssl=ssl_ctx,
                    server_hostname=server_hostname,
                ),
                options.connect_timeout,
            )
        except asyncio.TimeoutError:
            raise _unavailable(f"timed out connecting to {host}:{port}") from None
        except OSError as exc:
            raise _unavailable(f"cannot connect to {host}:{port}: {exc}") from exc
        if conn.dead is not None:
            raise conn.dead
        return conn

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() != "h2":
            self.dead = _unavailable(
                f"{self.host}:{self.port} did not agree to HTTP/2 over TLS (ALPN)"
            )
            transport.close()
            return
        self.core.initiate()
        self.keepalive.start(self._loop.time())
        self._schedule_keepalive()
        self.flush()

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        self.keepalive.data_received(self._loop.time())
        self._dispatch(self.core.receive_data(data))
        if self.sink_ready:
            self.run_sinks()
        self.flush()
        if self.core.closed_reason is not None and not self.core.active_calls:
            self._fail(self.core.closed_reason.message, lost=False)

    def eof_received(self) -> bool | None:
        self._fail(f"{self.host}:{self.port} closed the connection")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc else ""
        self._fail(f"connection to {self.host}:{self.port} lost{reason}")

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        for call in self.calls.values():
            call._wakeup.set()

    # -- driving the core

    @property
    def usable(self) -> bool:
        return self.dead is None and self.core.accepting_calls

    @property
    def idle(self) -> bool:
        return not self.calls

    def start_call(
        self,
        path: str,
        timeout: float | None,
        metadata: Iterable[tuple[str, MetadataValue]],
        send_deadline: bool = True,
    ) -> AsyncCall:
        if self.dead is not None:
            raise self.dead
        deadline = None if timeout is None else self._loop.time() + timeout
        sent = timeout if send_deadline else None
        call_id = self.core.start_call(path, timeout=sent, metadata=metadata)
        call = AsyncCall(self, call_id, deadline)
        self.calls[call_id] = call
        return call

    def flush_soon(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if self.dead is not None or self._transport is None:
            return
        data = self.core.data_to_send()
        if data:
            self._transport.write(data)
            self.bytes_sent += len(data)

    def _dispatch(self, events: list[Event]) -> None:
        calls = self.calls
        received = 0
        for event in events:
            if isinstance(event, (MessageReceived, ResponseHeaders, CallEnded)):
                if type(event) is MessageReceived:
                    received += 1
                call = calls.get(event.call_id)
                if call is not None:
                    call._deliver(event)
            elif isinstance(event, ConnectionTerminated):
                if event.too_many_pings:
                    self.keepalive.too_many_pings()
                log.info("%s:%d sent GOAWAY %r", self.host, self.port, event)
        self.messages_received += received
        for call in calls.values():
            # Senders waiting on flow control re-check after every read.
            call._wakeup.set()

    def _schedule_keepalive(self) -> None:
        wait = self.keepalive.seconds_until_due(self._loop.time())
        if wait is not None and self.dead is None:
            self._keepalive_handle = self._loop.call_later(max(wait, 0.05), self._keepalive_tick)

    def _keepalive_tick(self) -> None:
        action = self.keepalive.poll(self._loop.time(), len(self.calls))
        if action is KeepaliveAction.CONNECTION_DEAD:
            self._fail(f"{self.host}:{self.port} did not answer a keepalive PING")
            return
        if action is KeepaliveAction.SEND_PING:
            self.core.ping(os.urandom(8))
            self.flush()
        self._schedule_keepalive()

    def run_sinks(self) -> None:
        """Hand what arrived to the sinks of the calls that have news."""
        while self.sink_ready:
            ready = list(self.sink_ready)
            self.sink_ready.clear()
            for call in ready:
                batch = (
                    None if call._released else call._inbox.take_for_sink(self.core, call.call_id)
                )
                if batch is not None:
                    batch.deliver()

    def _fail(self, message: str, *, lost: bool = True) -> None:
        if self.dead is None:
            self.dead = _unavailable(message)
            self.lost = lost
            if lost:
                log.info("connection to %s:%d lost: %s", self.host, self.port, message)
        self._dispatch(self.core.connection_lost(message))
        self.run_sinks()
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
        if self._transport is not None:
            self._transport.close()

    def close(self) -> None:
        if self.dead is not None:
            return
        self.core.close()
        self.flush()
        self._fail("connection closed by the client", lost=False)
