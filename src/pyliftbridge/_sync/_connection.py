"""Blocking front end of the gRPC transport: sockets and one reader thread.

This module only moves bytes and wakes threads; every protocol decision is
made by :class:`~pyliftbridge._core.connection.GrpcConnection`.

Threads: each connection has one reader thread that reads the socket, feeds
the core and files events into per-call queues. Any thread may start calls,
send and receive. The core is guarded by ``_state``. Writes are serialised by
``_write``; the reader never *waits* for ``_write`` (it could deadlock against
a writer blocked on a full socket while the server waits for our
WINDOW_UPDATE), it leaves a flush request that the writing thread honours
before it lets go. Bytes move through :class:`SocketIO`, which keeps a TLS
socket's reads and writes from overlapping (OpenSSL forbids that).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, Callable

from .._core.connection import GrpcConnection
from .._core.events import (
    CallEnded,
    ConnectionTerminated,
    Event,
    MessageReceived,
    PingAcknowledged,
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
from ._socket_io import SocketIO

__all__ = ["SEND_HIGH_WATER", "Call"]

log = logging.getLogger("pyliftbridge.transport")

#: Outbound bytes a call may have queued before ``send`` waits for the window.
SEND_HIGH_WATER = 1024 * 1024


def _unavailable(message: str) -> UnavailableError:
    # A connection that cannot be opened or has broken fails calls with the
    # same status as the core gives a call cut off in flight, so that
    # ``err.code``/``err.status`` do not depend on which side of the race the
    # call was on (before the fix these errors had no status at all).
    return UnavailableError(message, status=Status(StatusCode.UNAVAILABLE, message))


class Call:
    """One gRPC call on a :class:`Channel` (unary, server- or bidi-streaming).

    Iterate it (or call :meth:`recv`) for response messages; the iteration
    ends when the call ends with OK and raises the mapped error otherwise.
    """

    def __init__(self, conn: _Connection, call_id: int, deadline: float | None) -> None:
        self._conn = conn
        self.call_id = call_id
        self._deadline = deadline
        self._inbox = CallInbox()
        self._cond = threading.Condition(conn._state)
        self._released = False

    # Called with ``_state`` held. ``notify=False`` when the caller wakes
    # every call once it has delivered a whole read (one wake-up per read,
    # not per message).
    def _deliver(self, event: Event, notify: bool = True) -> None:
        inbox = self._inbox
        inbox.deliver(event)
        if inbox.sink is not None:
            self._conn._sink_ready[self] = None
        elif notify:
            self._cond.notify_all()

    def set_sink(self, sink: MessageSink) -> None:
        """Hand every message to ``sink`` as it arrives (instead of :meth:`recv`).

        The sink runs on the connection's reader thread (or the thread that
        ended the call), one batch at a time, with no lock held.
        """
        conn = self._conn
        with conn._state:
            self._inbox.sink = sink
            if self._inbox.pending_messages or self._inbox.done:
                conn._sink_ready[self] = None
        conn._run_sinks()

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

    def send(self, payload: bytes, *, end: bool = False, flush: bool = True) -> None:
        """Queue one request message; ``flush=False`` lets several coalesce.

        Waits (up to the deadline) while more than ``SEND_HIGH_WATER`` bytes
        are held back by flow control.

        Raises:
            LiftbridgeError: the call already ended (its mapped error), or the
                message is too large.
        """
        conn = self._conn
        with conn._state:
            self._inbox.check_sendable()
            conn._core.send_message(self.call_id, payload, end=end)
            conn.messages_sent += 1
        if flush:
            conn._flush()
            if conn._core.outbound_pending(self.call_id) > SEND_HIGH_WATER:
                self._wait_writable()

    def queue(self, payload: bytes) -> None:
        """Queue one request message to be written by the next flush.

        Raises:
            LiftbridgeError: the call already ended (its mapped error), or the
                message is too large.
        """
        conn = self._conn
        with conn._state:
            self._inbox.check_sendable()
            conn._core.send_message(self.call_id, payload)
            conn.messages_sent += 1

    def flush(self) -> None:
        """Write everything queued on the connection."""
        self._conn._flush()

    def flush_soon(self) -> None:
        """Have the connection's writer thread write what is queued.

        Messages queued while it is busy writing go out together, which is
        what makes pipelined publishing fast.
        """
        self._conn.flush_soon()

    def end(self) -> None:
        """Half-close: no more request messages."""
        conn = self._conn
        with conn._state:
            if not self._inbox.done:
                conn._core.end_send(self.call_id)
        conn._flush()

    def _wait_writable(self) -> None:
        conn = self._conn
        expired = False
        try:
            with conn._state:
                while conn._core.outbound_pending(self.call_id) > SEND_HIGH_WATER:
                    self._inbox.check_sendable()
                    wait = remaining_time(self._deadline, None, time.monotonic())
                    if not self._cond.wait(wait):
                        self._expire()
                        expired = True
        finally:
            if expired:
                conn._flush()

    def recv(self, timeout: float | None = None) -> bytes | None:
        """Return the next response message, or None when the call ended OK.

        Raises:
            DeadlineExceededError: the call's deadline passed.
            TimeoutError: ``timeout`` passed first (the call goes on).
            LiftbridgeError: the call ended with an error status.
        """
        item: bytes | None = self._receive(self._inbox.take, timeout)
        return item

    def recv_batch(self, timeout: float | None = None) -> list[bytes] | None:
        """Every response message that has arrived (at least one; waits for it).

        None when the call ended OK; raises as :meth:`recv` does.
        """
        items: list[bytes] | None = self._receive(self._inbox.take_batch, timeout)
        return items

    def _receive(
        self, take: Callable[[GrpcConnection, int], tuple[Any, bool]], timeout: float | None
    ) -> Any:
        conn = self._conn
        flush = False
        # Fixed once: every read on the connection wakes every call, and a
        # timeout restarted on each wake-up would never expire on a busy one.
        until = None if timeout is None else time.monotonic() + timeout
        try:
            with conn._state:
                while True:
                    item, flush = take(conn._core, self.call_id)
                    if item is not EMPTY:
                        return item
                    wait = remaining_time(self._deadline, until, time.monotonic())
                    if not self._cond.wait(wait):
                        if self._deadline is not None and time.monotonic() >= self._deadline:
                            self._expire()
                            flush = True
                            continue
                        raise TimeoutError("no message within the timeout")
        finally:
            # Never flush with _state held: a writer may hold _write and want _state.
            if flush:
                conn._flush()

    def __iter__(self) -> Iterator[bytes]:
        while True:
            message = self.recv()
            if message is None:
                return
            yield message

    def cancel(self, message: str = "call cancelled by the client") -> None:
        """Cancel the call (RST_STREAM CANCEL); pending receivers get CancelledError."""
        conn = self._conn
        with conn._state:
            for event in conn._core.cancel(self.call_id, StatusCode.CANCELLED, message):
                self._deliver(event)
        conn._flush()

    def close(self) -> None:
        """Cancel the call if it is still running and release its resources."""
        if self._released:
            return
        self._released = True
        conn = self._conn
        with conn._state:
            for event in conn._core.cancel(self.call_id):
                self._deliver(event)
            conn._core.release(self.call_id)
            conn._calls.pop(self.call_id, None)
        conn._flush()

    def __enter__(self) -> Call:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _expire(self) -> None:
        for event in self._conn._core.cancel(
            self.call_id, StatusCode.DEADLINE_EXCEEDED, "deadline exceeded"
        ):
            self._deliver(event)


class _Connection:
    """One HTTP/2 connection: a socket, a reader thread and a GrpcConnection."""

    def __init__(
        self,
        host: str,
        port: int,
        options: ChannelOptions,
        tls: TLSConfig | None,
        keepalive: KeepalivePolicy | None = None,
    ):
        self.host = host
        self.port = port
        self._options = options
        self._state = threading.RLock()
        self._write = threading.Lock()
        self._flush_wanted = False
        self._writer_wanted = False
        self._writer_cond = threading.Condition(self._state)
        self._writer: threading.Thread | None = None
        self._calls: dict[int, Call] = {}
        #: Calls with a sink and news for it (an ordered set), guarded by ``_state``.
        self._sink_ready: dict[Call, None] = {}
        #: Held while sinks run, so one call's batches reach its sink in order.
        self._sink_lock = threading.RLock()
        self._dead: LiftbridgeError | None = None
        # Statistics, each changed by one owner: bytes_sent under ``_write``,
        # messages under ``_state``, bytes_received by the reader thread.
        self.bytes_sent = 0
        self.bytes_received = 0
        self.messages_sent = 0
        self.messages_received = 0
        #: True once the connection broke (not closed by us or a graceful GOAWAY).
        self.lost = False
        #: Keepalive policy; a channel passes the next connection ``keepalive.renewed()``.
        self.keepalive = keepalive or KeepalivePolicy(
            options.keepalive_interval,
            timeout=options.keepalive_timeout,
            min_interval=options.keepalive_min_interval,
        )
        self._io = SocketIO(self._dial(host, port, options, tls))
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._core = GrpcConnection(
            authority,
            scheme="https" if tls is not None else "http",
            max_receive_message_size=options.max_receive_message_size,
            max_send_message_size=options.max_send_message_size,
            stream_window=options.stream_window,
            connection_window=options.connection_window,
            user_agent=options.user_agent,
        )
        self._core.initiate()
        self.keepalive.start(time.monotonic())
        self._flush()
        self._reader = threading.Thread(
            target=self._read_loop, name=f"pyliftbridge-reader-{host}:{port}", daemon=True
        )
        self._reader.start()

    @classmethod
    def open(
        cls,
        host: str,
        port: int,
        options: ChannelOptions,
        tls: TLSConfig | None,
        keepalive: KeepalivePolicy | None = None,
    ) -> _Connection:
        """Connect (TCP, TLS, HTTP/2 preface) and start the reader thread."""
        return cls(host, port, options, tls, keepalive)

    @staticmethod
    def _dial(
        host: str, port: int, options: ChannelOptions, tls: TLSConfig | None
    ) -> socket.socket:
        # Before connecting, and outside the handlers below: a bad TLS
        # configuration is an InvalidArgumentError, not an unreachable broker
        # (the asyncio front end builds it before connecting too).
        ctx = tls.build_context() if tls is not None else None
        try:
            sock = socket.create_connection((host, port), timeout=options.connect_timeout)
        except OSError as exc:
            raise _unavailable(f"cannot connect to {host}:{port}: {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                assert ctx is not None
                sock = ctx.wrap_socket(sock, server_hostname=tls.server_hostname or host)
                if sock.selected_alpn_protocol() != "h2":
                    raise _unavailable(f"{host}:{port} did not agree to HTTP/2 over TLS (ALPN)")
            sock.settimeout(None)
        except OSError as exc:
            sock.close()
            ssl = sys.modules.get("ssl")  # imported by build_context when TLS is on
            if ssl is not None and isinstance(exc, ssl.SSLError):
                raise _unavailable(f"TLS handshake with {host}:{port} failed: {exc}") from exc
            raise _unavailable(f"cannot set up connection to {host}:{port}: {exc}") from exc
        except BaseException:
            sock.close()
            raise
        return sock

    @property
    def usable(self) -> bool:
        with self._state:
            return self._dead is None and self._core.accepting_calls

    @property
    def idle(self) -> bool:
        with self._state:
            return not self._calls

    def start_call(
        self,
        path: str,
        timeout: float | None,
        metadata: Iterable[tuple[str, MetadataValue]],
        send_deadline: bool = True,
    ) -> Call:
        deadline = None if timeout is None else time.monotonic() + timeout
        sent = timeout if send_deadline else None
        with self._state:
            if self._dead is not None:
                raise self._dead
            call_id = self._core.start_call(path, timeout=sent, metadata=metadata)
            call = Call(self, call_id, deadline)
            self._calls[call_id] = call
        return call

    # -- writing

    def flush_soon(self) -> None:
        if self._writer_wanted:
            # Already due: the writer clears the flag before it takes what is
            # queued, so it will write what our caller just queued.
            return
        with self._state:
            if self._dead is not None:
                return
            self._writer_wanted = True
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop,
                    name=f"pyliftbridge-writer-{self.host}:{self.port}",
                    daemon=True,
                )
                self._writer.start()
            self._writer_cond.notify()

    def _write_loop(self) -> None:
        while True:
            with self._state:
                while not self._writer_wanted and self._dead is None:
                    self._writer_cond.wait()
                if self._dead is not None:
                    return
                self._writer_wanted = False
            self._flush()

    def _flush(self) -> None:
        """Write whatever the core has queued; never blocks behind another writer."""
        while True:
            if not self._write.acquire(blocking=False):
                with self._state:
                    self._flush_wanted = True
                if not self._write.acquire(blocking=threading.current_thread() is not self._reader):
                    return
            try:
                while True:
                    with self._state:
                        self._flush_wanted = False
                        if self._dead is not None:
                            return
                        data = self._core.data_to_send()
                    if not data:
                        break
                    try:
                        self._io.sendall(data, self._alive)
                    except OSError as exc:
                        self._fail(f"write to {self.host}:{self.port} failed: {exc}")
                        return
                    self.bytes_sent += len(data)
            finally:
                self._write.release()
            with self._state:
                if not self._flush_wanted:
                    return

    # -- reading

    def _read_loop(self) -> None:
        io = self._io
        size = self._options.read_size
        # The keepalive timer waits for readability, not on a socket timeout:
        # that applies to every thread, and would fail a writer's sendall held
        # up by a peer that is slow to read ("timed out").
        try:
            while self._dead is None:
                wait = self.keepalive.seconds_until_due(time.monotonic())
                timeout = None if wait is None else max(wait, 0.05)
                if (wait is not None or io.needs_wait) and not io.wait_readable(timeout):
                    self._keepalive_tick()
                    continue
                data = io.recv(size)
                if data is None:
                    continue  # TLS: no whole record yet
                if not data:
                    self._fail(f"{self.host}:{self.port} closed the connection")
                    return
                self.bytes_received += len(data)
                self.keepalive.data_received(time.monotonic())
                with self._state:
                    events = self._core.receive_data(data)
                    self._dispatch(events)
                    if self._core.closed_reason is not None and not self._core.active_calls:
                        self._dead = UnavailableError(status=self._core.closed_reason)
                        self._writer_cond.notify_all()
                # Write first (PING ACKs, window updates, messages queued
                # meanwhile), then hand messages to their sinks: a caller that
                # an ack wakes then does not wait for the GIL while this
                # thread is in the middle of a write (~15 % off a waiting
                # publish's latency).
                self._flush()
                if self._sink_ready:
                    self._run_sinks()
                if self._dead is not None:
                    self._close_socket()
                    return
        except OSError as exc:
            self._fail(f"read from {self.host}:{self.port} failed: {exc}")
        except Exception as exc:  # a bug must not leave callers waiting forever
            log.exception("reader thread of %s:%d failed", self.host, self.port)
            self._fail(f"transport failure: {exc!r}")
        finally:
            io.shutdown()
            io.close()

    def _alive(self) -> bool:
        return self._dead is None

    def _keepalive_tick(self) -> None:
        with self._state:
            action = self.keepalive.poll(time.monotonic(), len(self._calls))
            if action is KeepaliveAction.SEND_PING:
                self._core.ping(os.urandom(8))
        if action is KeepaliveAction.CONNECTION_DEAD:
            self._fail(f"{self.host}:{self.port} did not answer a keepalive PING")
        elif action is KeepaliveAction.SEND_PING:
            self._flush()

    def _dispatch(self, events: list[Event]) -> None:
        calls = self._calls
        received = 0
        for event in events:
            if isinstance(event, (MessageReceived, ResponseHeaders, CallEnded)):
                if type(event) is MessageReceived:
                    received += 1
                call = calls.get(event.call_id)
                if call is not None:
                    call._deliver(event, notify=False)
            elif isinstance(event, ConnectionTerminated):
                if event.too_many_pings:
                    self.keepalive.too_many_pings()
                log.info("%s:%d sent GOAWAY %r", self.host, self.port, event)
            elif isinstance(event, PingAcknowledged):
                pass
        self.messages_received += received
        for call in calls.values():
            # Senders waiting on flow control re-check after every read.
            call._cond.notify_all()

    def _run_sinks(self) -> None:
        """Hand what arrived to the sinks of the calls that have news."""
        with self._sink_lock:
            while True:
                with self._state:
                    if not self._sink_ready:
                        return
                    ready = list(self._sink_ready)
                    self._sink_ready.clear()
                    batches = [
                        call._inbox.take_for_sink(self._core, call.call_id)
                        for call in ready
                        if not call._released
                    ]
                for batch in batches:
                    if batch is not None:
                        batch.deliver()

    def _fail(self, message: str, *, lost: bool = True) -> None:
        with self._state:
            first = self._dead is None
            if first:
                self._dead = _unavailable(message)
                self.lost = lost
            self._dispatch(self._core.connection_lost(message))
            self._writer_cond.notify_all()
        if first and lost:
            log.info("connection to %s:%d lost: %s", self.host, self.port, message)
        self._run_sinks()
        self._close_socket()

    def _close_socket(self) -> None:
        # The reader closes the socket as it leaves; shutting it down wakes it.
        self._io.shutdown()
        reader = getattr(self, "_reader", None)
        if reader is None or threading.current_thread() is reader or not reader.is_alive():
            self._io.close()

    def close(self) -> None:
        with self._state:
            if self._dead is not None:
                return
            self._core.close()
        self._flush()
        self._fail("connection closed by the client", lost=False)
        if threading.current_thread() is not self._reader:
            self._reader.join(5.0)
