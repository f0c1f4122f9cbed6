"""Keepalive end to end: both front ends against in-process HTTP/2 peers.

The keepalive *policy* is unit-tested in ``tests/unit/test_keepalive.py``;
these tests check what the blocking and asyncio front ends do with it on a
real socket: that PINGs go out after the configured read silence, that an
unanswered PING fails pending calls with UnavailableError and closes the
connection, that a peer acking PINGs keeps an idle call alive, that the
back-off after GOAWAY ENHANCE_YOUR_CALM "too_many_pings" outlives the
connection the peer closed, that a connection without calls neither pings
nor wakes up needlessly, and that the keepalive timer does not fail a write
held up by a peer that is slow to read.

:class:`FramePeer` speaks HTTP/2 by hand, frame by frame, on threads: it
answers the preface and SETTINGS, records the HEADERS and PING frames it
receives with their arrival times, and does nothing else unless a test asks
(ack PINGs, send GOAWAY, answer a call), in plaintext or over TLS.
Hand-written rather than h2-based because h2 acks every PING by itself, and
the dead peer must not. No grpcio, so these run on PyPy too; one test also
uses a grpcio server as an independent peer that acks PINGs (CPython only).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import queue
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import hpack
import pytest
from raw_server import RawServer
from transport_fronts import FRONT_ENDS, run

from pyliftbridge._core.connection import GrpcConnection
from pyliftbridge._core.keepalive import KeepalivePolicy
from pyliftbridge._options import ChannelOptions, TLSConfig
from pyliftbridge._status import StatusCode
from pyliftbridge.errors import UnavailableError

pytestmark = [pytest.mark.interop, pytest.mark.timeout(20)]

PATH = "/interop.Test/Keepalive"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Frame types, flags, settings and codes (RFC 9113, section 6).
DATA, HEADERS, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0x0, 0x1, 0x4, 0x6, 0x7, 0x8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
INITIAL_WINDOW_SIZE, MAX_WINDOW = 0x4, 2**31 - 1
ENHANCE_YOUR_CALM = 0xB
MiB = 1024 * 1024


@pytest.fixture(params=FRONT_ENDS)
def front(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def keepalive(interval: float, timeout: float) -> ChannelOptions:
    # The floor (grpc-go's 5 minutes) is lowered: these peers permit anything.
    return ChannelOptions(
        keepalive_interval=interval, keepalive_min_interval=interval, keepalive_timeout=timeout
    )


def grpc_message(payload: bytes) -> bytes:
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


class PeerConnection:
    """One accepted connection of a :class:`FramePeer`, and what arrived on it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.opened_at = time.monotonic()
        #: Arrival times of the client's PINGs (acks excluded).
        self.pings: list[float] = []
        #: (stream id, arrival time) of the client's HEADERS frames.
        self.headers: list[tuple[int, float]] = []
        #: Set when the read loop ends: the client closed the connection (or the peer did).
        self.closed = threading.Event()
        # Calls to complete, queued by the test: only the peer's own thread
        # touches the socket (an SSLSocket must not be used by two at once).
        self._answers: queue.SimpleQueue[tuple[int, bytes]] = queue.SimpleQueue()
        self._encoder = hpack.Encoder()

    def send_frame(self, kind: int, flags: int, stream_id: int, payload: bytes = b"") -> None:
        header = len(payload).to_bytes(3, "big") + bytes([kind, flags])
        self.sock.sendall(header + stream_id.to_bytes(4, "big") + payload)

    def answer(self, stream_id: int, message: bytes) -> None:
        """Complete the call on ``stream_id`` after the next frame from the client.

        The tests use it while the client pings, so that is soon.
        """
        self._answers.put((stream_id, message))

    def send_answers(self) -> None:
        """Send what :meth:`answer` queued: headers, one message, OK trailers."""
        while not self._answers.empty():
            stream_id, message = self._answers.get()
            head = self._encoder.encode([(":status", "200"), ("content-type", "application/grpc")])
            self.send_frame(HEADERS, END_HEADERS, stream_id, head)
            self.send_frame(DATA, 0, stream_id, grpc_message(message))
            tail = self._encoder.encode([("grpc-status", "0")])
            self.send_frame(HEADERS, END_HEADERS | END_STREAM, stream_id, tail)

    def pings_after(self, start: float) -> list[float]:
        return [t for t in self.pings if t >= start]


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class FramePeer:
    """A hand-made HTTP/2 server on 127.0.0.1, one thread per connection.

    Args:
        ack_pings: answer PINGs (a live peer) or ignore them (a dead one).
        too_many_pings_after: close the *first* connection with GOAWAY
            ENHANCE_YOUR_CALM "too_many_pings" once that many PINGs arrived on
            it, as grpc-go does; later connections are left alone, so the
            test sees how the client pings on the next one.
        answer: complete every call with this message as soon as its request
            has arrived; None leaves calls pending.
        pause_reading: when the second call's HEADERS arrive, stop reading for
            that many seconds (a busy peer). It also opens the flow-control
            windows wide and shrinks the receive buffer, so that the client's
            writes back up in its socket rather than in HTTP/2 flow control.
        tls: serve TLS with this context (ALPN ``h2`` set) instead of h2c.
    """

    def __init__(
        self,
        *,
        ack_pings: bool,
        too_many_pings_after: int | None = None,
        answer: bytes | None = None,
        pause_reading: float = 0.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.ack_pings = ack_pings
        self.too_many_pings_after = too_many_pings_after
        self.answer = answer
        self.pause_reading = pause_reading
        self.tls = tls
        #: Request bytes (DATA payloads) received, over all connections.
        self.data_received = 0
        self.connections: list[PeerConnection] = []
        self._lock = threading.Lock()
        self._server = RawServer(
            self._handle,
            receive_buffer=64 * 1024 if pause_reading else None,
            errors_after_close=False,
        )
        self.address = self._server.address

    @property
    def errors(self) -> list[BaseException]:
        """What went wrong on the peer's side while it was open."""
        return self._server.errors

    def _handle(self, sock: socket.socket) -> None:
        conn = PeerConnection(sock)
        with self._lock:
            self.connections.append(conn)
            index = len(self.connections) - 1
        try:
            if self.tls is not None:
                conn.sock = self.tls.wrap_socket(conn.sock, server_side=True)
            self._serve(conn, index)
        finally:
            conn.closed.set()
            conn.sock.close()

    def _serve(self, conn: PeerConnection, index: int) -> None:
        sock = conn.sock
        if _recv_exact(sock, len(PREFACE)) != PREFACE:
            return
        if self.pause_reading:
            setting = INITIAL_WINDOW_SIZE.to_bytes(2, "big") + MAX_WINDOW.to_bytes(4, "big")
            conn.send_frame(SETTINGS, 0, 0, setting)
            conn.send_frame(WINDOW_UPDATE, 0, 0, (MAX_WINDOW - 65535).to_bytes(4, "big"))
        else:
            conn.send_frame(SETTINGS, 0, 0)
        while True:
            head = _recv_exact(sock, 9)
            if head is None:
                return
            kind, flags = head[3], head[4]
            stream_id = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
            payload = _recv_exact(sock, int.from_bytes(head[:3], "big"))
            if payload is None:
                return
            now = time.monotonic()
            if kind == SETTINGS and not flags & ACK:
                conn.send_frame(SETTINGS, ACK, 0)
            elif kind == HEADERS:
                conn.headers.append((stream_id, now))
                if stream_id == 3 and self.pause_reading:
                    time.sleep(self.pause_reading)
            elif kind == DATA:
                self.data_received += len(payload)
            elif kind == PING and not flags & ACK:
                conn.pings.append(now)
                if self.ack_pings:
                    conn.send_frame(PING, ACK, 0, payload)
                if index == 0 and len(conn.pings) == self.too_many_pings_after:
                    last = max((sid for sid, _ in conn.headers), default=0)
                    goaway = last.to_bytes(4, "big") + ENHANCE_YOUR_CALM.to_bytes(4, "big")
                    conn.send_frame(GOAWAY, 0, 0, goaway + b"too_many_pings")
                    return  # and close, like grpc-go
            if kind in (DATA, HEADERS) and flags & END_STREAM and self.answer is not None:
                conn.answer(stream_id, self.answer)
            conn.send_answers()

    def close(self) -> None:
        self._server.close(also=[conn.sock for conn in self.connections])


@contextlib.contextmanager
def frame_peer(**kwargs: Any) -> Iterator[FramePeer]:
    peer = FramePeer(**kwargs)
    try:
        yield peer
    finally:
        peer.close()
    assert not peer.errors, peer.errors


async def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    """Poll ``condition`` without blocking the loop (the asyncio front end runs on it)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]


# ------------------------------------------------------------------ dead peer


@pytest.mark.parametrize("kind", ["unary", "server-streaming"])
def test_unanswered_ping_fails_pending_call(front: str, kind: str) -> None:
    # The peer takes the call and then says nothing, not even a PING ack: only
    # keepalive can tell that it is gone. The call has no deadline (streaming)
    # or a long one (unary), far beyond the bound checked here.
    interval, timeout = 0.1, 0.2
    with frame_peer(ack_pings=False) as peer:

        async def scenario(ch: Any) -> None:
            start = time.monotonic()
            with pytest.raises(UnavailableError) as info:
                if kind == "unary":
                    await ch.unary(PATH, b"x", timeout=10.0)
                else:
                    call = await ch.server_stream(PATH, b"x")
                    try:
                        # The timeout only bounds the test: a failure to detect
                        # the dead peer shows as TimeoutError, not as a hang.
                        await call.recv(timeout=3.0)
                    finally:
                        call.close()
            elapsed = time.monotonic() - start
            err = info.value
            assert "keepalive" in str(err), err
            assert err.code is StatusCode.UNAVAILABLE
            # One interval of silence, then one timeout for the ack.
            assert interval + timeout - 0.05 <= elapsed < 2.0, elapsed

        run(front, peer.address, scenario, options=keepalive(interval, timeout))
        [conn] = peer.connections
        assert [sid for sid, _ in conn.headers] == [1]
        # Exactly one PING: none is sent while one is awaiting its ack.
        assert len(conn.pings) == 1, conn.pings
        assert conn.pings[0] - conn.headers[0][1] >= interval - 0.05
        # The client gave the connection up instead of leaving it open.
        assert conn.closed.wait(2.0)


# ------------------------------------------------------------------ live peer


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, TLSConfig]:
    """A server context for :class:`FramePeer` and the client settings that trust it."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("peer.test").configure_cert(server)
    server.set_alpn_protocols(["h2"])
    return server, TLSConfig(ca_data=ca.cert_pem.bytes(), server_hostname="peer.test")


def test_acked_pings_keep_idle_call_alive(front: str, tls: tuple[ssl.SSLContext, Any]) -> None:
    # Over TLS: the blocking front end waits for readability before reading,
    # and TLS may hold bytes already read from the socket. The ack timeout is
    # longer than the interval (a common setting: grpc's default timeout is
    # 20 s): PINGs must still go out one interval after the last read (the
    # previous ack), not one timeout after the previous PING.
    interval, timeout, idle = 0.1, 0.5, 0.6
    server_tls, client_tls = tls
    with frame_peer(ack_pings=True, tls=server_tls) as peer:

        async def scenario(ch: Any) -> None:
            call = await ch.server_stream(PATH, b"x")
            try:
                await wait_until(lambda: bool(peer.connections and peer.connections[0].headers), 2)
                with pytest.raises(TimeoutError):
                    await call.recv(timeout=idle)  # nothing to read; the call goes on
                assert not call.done
                conn = peer.connections[0]
                conn.answer(1, b"still here")
                assert await call.recv(timeout=2.0) == b"still here"
                assert await call.recv(timeout=2.0) is None
                assert call.status is not None and call.status.ok
            finally:
                call.close()

        run(front, peer.address, scenario, options=keepalive(interval, timeout), tls=client_tls)
        [conn] = peer.connections  # never reconnected
        pings = conn.pings_after(conn.headers[0][1])
        # About idle / interval of them; one every `timeout` would be 2 at most.
        assert len(pings) >= 3, gaps(pings)
        # Never more often than the interval (measured from each ack).
        assert min(gaps(pings)) >= interval * 0.9, gaps(pings)


@pytest.fixture
def pings_sent(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Times at which the client queued a PING (both front ends ping through the core)."""
    sent: list[float] = []
    original = GrpcConnection.ping

    def ping(self: GrpcConnection, opaque: bytes) -> None:
        sent.append(time.monotonic())
        original(self, opaque)

    monkeypatch.setattr(GrpcConnection, "ping", ping)
    return sent


def test_grpcio_peer_keeps_idle_stream_alive(front: str, pings_sent: list[float]) -> None:
    pytest.importorskip("grpc", reason="grpcio (test-only dependency) is not installable on PyPy")
    from grpc_peer import PeerServer, method

    token = os.urandom(8).hex()
    interval, timeout, idle = 0.1, 0.5, 0.7
    # grpcio polices PINGs like grpc-go (5 minutes, 2 strikes); permit them,
    # so that what is tested is the client against a cooperating peer.
    permissive = [
        ("grpc.http2.min_ping_interval_without_data_ms", 10),
        ("grpc.http2.max_ping_strikes", 0),
    ]
    with PeerServer(options=permissive) as server:

        async def scenario(ch: Any) -> None:
            # Hang: one message, then the server holds the call until it is cancelled.
            call = await ch.server_stream(method("Hang"), token.encode())
            try:
                assert await call.recv(timeout=5.0) == b"first"
                start = time.monotonic()
                with pytest.raises(TimeoutError):
                    await call.recv(timeout=idle)
                assert not call.done
                # Acked each time, or the 0.5 s timeout would have failed the call.
                assert len([t for t in pings_sent if t >= start]) >= 3, pings_sent
            finally:
                call.close()

        run(front, server.address, scenario, options=keepalive(interval, timeout))
        # The server saw the call alive until the client cancelled it.
        assert server.service.cancelled_event(token).wait(5.0)


# ---------------------------------------------------------- too_many_pings


def test_too_many_pings_backoff_outlives_the_connection(
    front: str, caplog: pytest.LogCaptureFixture
) -> None:
    # grpc-go answers pings it finds too frequent with GOAWAY ENHANCE_YOUR_CALM
    # "too_many_pings" and closes the connection. Doubling the interval only
    # on that (closed) connection would change nothing: the next connection
    # would ping as fast and be closed again, forever.
    caplog.set_level(logging.INFO, logger="pyliftbridge")
    interval = 0.1
    with frame_peer(ack_pings=True, too_many_pings_after=2) as peer:

        async def scenario(ch: Any) -> None:
            call = await ch.server_stream(PATH, b"x")
            with pytest.raises(UnavailableError):
                await call.recv(timeout=3.0)
            call.close()
            call = await ch.server_stream(PATH, b"y")  # a new connection
            try:
                await wait_until(lambda: len(peer.connections) == 2, 2)
                second = peer.connections[1]
                await wait_until(lambda: len(second.pings) >= 2, 5 * interval * 2)
                second.answer(1, b"fine")
                assert await call.recv(timeout=2.0) == b"fine"
            finally:
                call.close()

        run(front, peer.address, scenario, options=keepalive(interval, 5.0))
        first, second = peer.connections
        assert len(first.pings) == 2
        assert min(gaps(first.pings)) >= interval * 0.9
        # Twice the interval on the next connection, from its first PING on.
        start = second.headers[0][1]
        assert second.pings[0] - start >= 2 * interval * 0.9, second.pings[0] - start
        assert min(gaps(second.pings)) >= 2 * interval * 0.9, gaps(second.pings)
    assert any("too_many_pings" in r.getMessage() for r in caplog.records), caplog.text


# ------------------------------------------------------------------ no calls


@pytest.fixture
def keepalive_polls(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Times at which a front end asked its keepalive policy what to do."""
    polls: list[float] = []
    original = KeepalivePolicy.poll

    def poll(self: KeepalivePolicy, now: float, active_calls: int) -> Any:
        polls.append(time.monotonic())
        return original(self, now, active_calls)

    monkeypatch.setattr(KeepalivePolicy, "poll", poll)
    return polls


def test_connection_without_calls_neither_pings_nor_spins(
    front: str, keepalive_polls: list[float]
) -> None:
    # With no call running there is nothing to keep alive (and grpc-go
    # servers refuse such PINGs); the timer must not fire every few
    # milliseconds instead. A call started later is covered again.
    interval, idle = 0.2, 0.6
    with frame_peer(ack_pings=True, answer=b"done") as peer:

        async def scenario(ch: Any) -> None:
            assert await ch.unary(PATH, b"x", timeout=5.0) == b"done"
            start = time.monotonic()
            await asyncio.sleep(idle)  # the blocking front end idles on its own threads
            conn = peer.connections[0]
            assert conn.pings_after(start) == []
            polls = [t for t in keepalive_polls if t >= start]
            # About one check per interval; a 50 ms spin would be about 20.
            assert len(polls) <= idle / interval + 2, gaps(polls)

            peer.answer = None
            call = await ch.server_stream(PATH, b"y")
            try:
                # The connection has been silent for longer than the interval:
                # the new call's PING is due at once, and goes out within one
                # more interval at most (the dormant check period).
                started = time.monotonic()
                await wait_until(lambda: bool(conn.pings_after(started)), interval + 1.0)
                assert conn.pings_after(started)[0] - started < interval + 0.2
            finally:
                call.close()

        run(front, peer.address, scenario, options=keepalive(interval, 2.0))
        assert len(peer.connections) == 1


# ---------------------------------------------------------- blocked writes


@pytest.mark.parametrize("over_tls", [False, True], ids=["h2c", "tls"])
def test_keepalive_timer_does_not_fail_a_blocked_write(
    front: str, over_tls: bool, request: pytest.FixtureRequest
) -> None:
    # A request larger than the socket buffers, to a peer that stops reading
    # for a while: the send waits. The keepalive timer runs meanwhile (the
    # call is active, nothing is read); it must not turn that wait into a
    # failed write (the blocking front end once timed its keepalive with a
    # socket timeout, which applies to the writing threads too). Over TLS the
    # blocking front end's socket is non-blocking: this is where its writes
    # meet "want write" and must be retried with the same bytes.
    size, pause = 8 * MiB, 0.4
    server_tls, client_tls = request.getfixturevalue("tls") if over_tls else (None, None)
    with frame_peer(ack_pings=True, answer=b"ok", pause_reading=pause, tls=server_tls) as peer:

        async def scenario(ch: Any) -> None:
            # First a round trip: the client has then applied the peer's wide
            # windows, and the second call's bytes go straight to the socket.
            assert await ch.unary(PATH, b"warm-up", timeout=5.0) == b"ok"
            start = time.monotonic()
            assert await ch.unary(PATH, b"x" * size, timeout=10.0) == b"ok"
            assert time.monotonic() - start >= pause * 0.9  # the write did wait

        options = dataclasses.replace(keepalive(0.1, 5.0), max_send_message_size=2 * size)
        run(front, peer.address, scenario, options=options, tls=client_tls)
        assert len(peer.connections) == 1
        assert peer.data_received == len(grpc_message(b"warm-up")) + len(grpc_message(b"x" * size))
