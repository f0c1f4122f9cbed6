"""A gRPC channel to one broker (asyncio flavour; the blocking one is generated from it).

The channel owns at most one usable HTTP/2 connection at a time (plus any
that are draining after a GOAWAY) and makes calls on it. Everything that
touches sockets lives in ``_connection``, which each flavour writes for
itself; the logic here -- when to reconnect, how a unary call is made and
when it is transparently retried -- is written once.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from types import TracebackType

from .._address import parse_address
from .._core.keepalive import KeepalivePolicy
from .._core.metadata import MetadataValue
from .._options import ChannelOptions, TLSConfig
from .._stats import BrokerStats, TransportCounters
from ..errors import ClientClosedError, ProtocolError, UnavailableError
from ._backend import Lock, Mutex, monotonic
from ._connection import AsyncCall, _AsyncConnection

__all__ = ["AsyncCall", "AsyncChannel"]

log = logging.getLogger("pyliftbridge.transport")


class AsyncChannel:
    """A gRPC channel to one broker address, over one HTTP/2 connection at a time.

    The connection is opened on first use and reopened after it breaks or the
    server sends GOAWAY; calls in flight on a broken connection fail with
    UnavailableError. Safe to share between tasks (or threads, for the
    blocking ``Channel``).

    Args:
        address: ``host:port`` of the broker.
        tls: TLS settings, or None for plaintext (h2c).
        options: transport knobs.
        connect_timeout: overrides ``options.connect_timeout``.
    """

    def __init__(
        self,
        address: str,
        *,
        tls: TLSConfig | None = None,
        options: ChannelOptions | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        self.address = address
        self.host, self.port = parse_address(address)
        opts = options or ChannelOptions()
        if connect_timeout is not None:
            opts = dataclasses.replace(opts, connect_timeout=connect_timeout)
        self.options = opts
        self._tls = tls
        self._lock = Lock()
        self._conn: _AsyncConnection | None = None
        self._draining: list[_AsyncConnection] = []
        self._closed = False
        #: Counts of connections no longer in use (changed under ``_lock``).
        self._retired = TransportCounters()
        self._stats_mutex = Mutex()
        self._last_keepalive: KeepalivePolicy | None = None

    async def _connection(self, timeout: float | None = None) -> _AsyncConnection:
        conn = self._conn
        if conn is not None and conn.usable:
            return conn
        async with self._lock:
            if self._closed:
                raise ClientClosedError("channel is closed")
            conn = self._conn
            if conn is not None and conn.usable:
                return conn
            if conn is not None:
                # Calls still running on it may finish (GOAWAY); it closes once idle.
                with self._stats_mutex:
                    self._draining.append(conn)
                    self._conn = None
                self._last_keepalive = conn.keepalive
            # The keepalive interval is the channel's: a back-off after
            # GOAWAY "too_many_pings" must hold on the next connection too.
            last = self._last_keepalive
            keepalive = None if last is None else last.renewed()
            self._reap()
            options = self.options
            if timeout is not None and timeout < options.connect_timeout:
                # Connecting is part of the call: it gets no more than the call's deadline.
                options = dataclasses.replace(options, connect_timeout=max(timeout, 1e-3))
            try:
                conn = await _AsyncConnection.open(
                    self.host, self.port, options, self._tls, keepalive
                )
            except Exception as exc:
                with self._stats_mutex:
                    self._retired.connect_failures += 1
                log.debug("connect to %s failed: %s", self.address, exc)
                raise
            with self._stats_mutex:
                self._conn = conn
                self._retired.connections_opened += 1
            log.info("connected to %s", self.address)
            return conn

    def _reap(self, conns: list[_AsyncConnection] | None = None) -> None:
        """Close the draining connections that are idle (or ``conns``) and fold in their counts."""
        done = [c for c in self._draining if c.idle] if conns is None else conns
        for conn in done:
            conn.close()
        with self._stats_mutex:
            if conns is None:
                self._draining = [c for c in self._draining if c not in done]
            else:
                self._conn = None
                self._draining = []
            for conn in done:
                self._retired.add_connection(conn)

    def stats(self) -> BrokerStats:
        """Traffic with this broker since the channel was made."""
        with self._stats_mutex:
            live = [c for c in (self._conn, *self._draining) if c is not None]
            return self._retired.snapshot(self.address, live)

    async def open_call(
        self,
        path: str,
        *,
        timeout: float | None = None,
        metadata: Iterable[tuple[str, MetadataValue]] = (),
        send_deadline: bool = True,
    ) -> AsyncCall:
        """Start a call of any kind; send with ``send``, read with ``recv``."""
        if self._closed:
            raise ClientClosedError("channel is closed")
        conn = await self._connection(timeout)
        return conn.start_call(path, timeout, metadata, send_deadline)

    async def unary(
        self,
        path: str,
        request: bytes,
        *,
        timeout: float | None,
        metadata: Iterable[tuple[str, MetadataValue]] = (),
        send_deadline: bool = True,
    ) -> bytes:
        """Make a unary call and return the response message.

        The deadline is always enforced here; ``send_deadline=False`` keeps it
        from the server too (no ``grpc-timeout``), for the few calls whose
        server side behaves worse when it knows one.

        A call the server provably never saw (refused stream, GOAWAY, the
        connection broke before it was sent) is retried once on a new
        connection.

        Raises:
            LiftbridgeError: the mapped error of a failed status.
        """
        metadata = tuple(metadata)
        deadline = None if timeout is None else monotonic() + timeout
        for attempt in (0, 1):
            if deadline is not None:
                # The retry gets what is left of the deadline, not a new one.
                timeout = max(0.0, deadline - monotonic())
            async with await self.open_call(
                path, timeout=timeout, metadata=metadata, send_deadline=send_deadline
            ) as call:
                try:
                    await call.send(request, end=True)
                    response = await call.recv()
                    if response is None:
                        raise ProtocolError(f"{path} ended without a response message")
                    if await call.recv() is not None:
                        raise ProtocolError(f"{path} sent more than one response message")
                    return response
                except UnavailableError:
                    if attempt or not call.transparent_retry:
                        raise
        raise AssertionError("unreachable")

    async def server_stream(
        self,
        path: str,
        request: bytes,
        *,
        timeout: float | None = None,
        metadata: Iterable[tuple[str, MetadataValue]] = (),
    ) -> AsyncCall:
        """Start a server-streaming call; iterate the returned call for messages."""
        call = await self.open_call(path, timeout=timeout, metadata=metadata)
        try:
            await call.send(request, end=True)
        except BaseException:
            call.close()
            raise
        return call

    async def close(self) -> None:
        """Close every connection; running calls fail with UnavailableError."""
        async with self._lock:
            self._closed = True
            conns = [c for c in (self._conn, *self._draining) if c is not None]
        self._reap(conns)

    async def __aenter__(self) -> AsyncChannel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
