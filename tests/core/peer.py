"""An in-memory gRPC server peer for testing the sans-IO core.

:class:`Peer` wires a :class:`~pyliftbridge._core.connection.GrpcConnection`
(the client under test) to a server-side ``h2`` connection. Nothing touches a
socket or a clock: :meth:`Peer.pump` moves bytes in both directions until both
sides are quiet and collects the client's events.

The server side is deliberately written without the core's helpers: requests
are decoded by :func:`split_messages` here, so a bug in the core's framing
cannot hide itself.

Server -> client bytes can be cut into arbitrary reads with ``chunker``, and
the server's DATA frames can be cut at arbitrary points (``cuts=``), which is
how split tests exercise the client's reassembly.

:class:`Mirror` drives several ``GrpcConnection`` objects in lock step (for
instance one with the receive fast path and one without) and fails as soon as
their return values, events or output bytes differ.
"""

from __future__ import annotations

import base64
import struct
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import h2.config
import h2.connection
import h2.events
import h2.settings
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    WindowUpdateFrame,
)

from pyliftbridge._core.connection import GrpcConnection
from pyliftbridge._core.events import (
    CallEnded,
    ConnectionTerminated,
    Event,
    MessageReceived,
    PingAcknowledged,
    ResponseHeaders,
)

AUTHORITY = "lift.example:9292"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
Chunker = Callable[[bytes], Iterable[bytes]]


# ----------------------------------------------------------------- helpers


def frame_message(payload: bytes, flag: int = 0) -> bytes:
    """One length-prefixed gRPC message, built independently of the core."""
    return struct.pack(">BI", flag, len(payload)) + payload


def split_messages(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Decode ``(flag, payload)`` messages from a byte string; also return the leftover."""
    out = []
    pos = 0
    while len(data) - pos >= 5:
        flag, size = struct.unpack_from(">BI", data, pos)
        if len(data) - pos - 5 < size:
            break
        out.append((flag, data[pos + 5 : pos + 5 + size]))
        pos += 5 + size
    return out, data[pos:]


def whole(data: bytes) -> list[bytes]:
    """The default chunker: one read per pump round."""
    return [data]


def fixed_chunks(size: int) -> Chunker:
    """Reads of ``size`` bytes (the last one shorter)."""

    def chunker(data: bytes) -> list[bytes]:
        return [data[i : i + size] for i in range(0, len(data), size)]

    return chunker


def cut_stream(cuts: Sequence[int]) -> Chunker:
    """Reads of the given sizes, cycling; sizes apply across pump rounds."""
    sizes = deque(max(1, c) for c in cuts) if cuts else deque([1 << 30])

    def chunker(data: bytes) -> list[bytes]:
        out = []
        pos = 0
        while pos < len(data):
            n = sizes[0]
            sizes.rotate(-1)
            out.append(data[pos : pos + n])
            pos += n
        return out

    return chunker


def parse_frames(data: bytes) -> list[Frame]:
    """Parse a byte string made of whole HTTP/2 frames (after the client preface)."""
    frames = []
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        frame, length = Frame.parse_frame_header(view[pos : pos + 9])
        frame.parse_body(view[pos + 9 : pos + 9 + length])
        frames.append(frame)
        pos += 9 + length
    return frames


def event_key(ev: Any) -> Any:
    """A comparable summary of a core event (events have no ``__eq__``)."""
    if isinstance(ev, Event):
        slots: list[str] = []
        for cls in type(ev).__mro__:
            slots.extend(getattr(cls, "__slots__", ()))
        return (type(ev).__name__, tuple((s, getattr(ev, s)) for s in sorted(slots)))
    if isinstance(ev, (list, tuple)):
        return [event_key(e) for e in ev]
    return ev


# ------------------------------------------------------------------ mirror


class Mirror:
    """Several GrpcConnections driven identically; every result must match.

    Attribute reads return the first connection's value; method calls run on
    all of them and compare results (events by :func:`event_key`, bytes by
    value, exceptions by type and text).
    """

    def __init__(self, conns: Sequence[GrpcConnection]) -> None:
        self.conns = list(conns)

    def __getattr__(self, name: str) -> Any:
        first = getattr(self.conns[0], name)
        if not callable(first):
            return first

        def call(*args: Any, **kwargs: Any) -> Any:
            results = []
            for conn in self.conns:
                try:
                    results.append(("ok", getattr(conn, name)(*args, **kwargs)))
                except Exception as exc:  # compared below, then re-raised
                    results.append(("raise", exc))
            keys = [
                (kind, event_key(r) if kind == "ok" else (type(r), str(r))) for kind, r in results
            ]
            for i, key in enumerate(keys[1:], 1):
                assert key == keys[0], f"{name}: connection {i} differs:\n{key}\nvs\n{keys[0]}"
            kind, value = results[0]
            if kind == "raise":
                raise value
            return value

        return call


# -------------------------------------------------------------------- peer


@dataclass
class Request:
    """What the server saw of one stream."""

    stream_id: int
    headers: list[tuple[bytes, bytes]]
    data: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset_code: int | None = None
    data_frames: int = 0

    @property
    def messages(self) -> list[bytes]:
        msgs, _ = split_messages(bytes(self.data))
        assert all(flag == 0 for flag, _ in msgs), "client sent a compressed message"
        return [m for _, m in msgs]

    @property
    def leftover(self) -> bytes:
        return split_messages(bytes(self.data))[1]

    def header(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


class Peer:
    """A server-side h2 connection in memory, talking to a GrpcConnection.

    Args:
        client: the connection under test (or a :class:`Mirror`); by default
            a new ``GrpcConnection(AUTHORITY, **client_kwargs)``.
        settings: the server's SETTINGS in its preface (for example
            MAX_CONCURRENT_STREAMS or INITIAL_WINDOW_SIZE).
        server_window: the server's connection receive window; a value
            above 65535 makes the server send a WINDOW_UPDATE in its preface.
        auto_ack: acknowledge received DATA at once (else call :meth:`ack`).
        chunker: cuts the server->client byte stream into reads.
    """

    def __init__(
        self,
        client: Any = None,
        *,
        settings: dict[int, int] | None = None,
        server_window: int = 1 << 20,
        auto_ack: bool = True,
        chunker: Chunker = whole,
        **client_kwargs: Any,
    ) -> None:
        self.client = client if client is not None else GrpcConnection(AUTHORITY, **client_kwargs)
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=True,
            normalize_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.server = h2.connection.H2Connection(config=config)
        if settings:
            values = {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100, **settings}
            self.server.local_settings = h2.settings.Settings(client=False, initial_values=values)
            if h2.settings.SettingCodes.MAX_FRAME_SIZE in values:
                self.server.max_inbound_frame_size = values[h2.settings.SettingCodes.MAX_FRAME_SIZE]
        self.server_window = server_window
        self.auto_ack = auto_ack
        self.chunker = chunker
        self.events: list[Event] = []
        self.server_events: list[Any] = []
        self.client_frames: list[Frame] = []
        self.requests: dict[int, Request] = {}
        self.pings_acked: list[bytes] = []
        self.reads: list[bytes] = []  # every read handed to the client, in order
        self._out = bytearray()
        self._queue: dict[int, deque[tuple[str, Any]]] = {}
        self._c2s_preface_seen = False

    # ------------------------------------------------------------ plumbing

    def handshake(self) -> list[Event]:
        """Exchange prefaces and SETTINGS (and the ACKs)."""
        self.client.initiate()
        self.server.initiate_connection()
        if self.server_window > 65535:
            self.server.increment_flow_control_window(self.server_window - 65535)
        return self.pump()

    def pump(self, rounds: int = 10_000) -> list[Event]:
        """Move bytes both ways until neither side has anything to send."""
        start = len(self.events)
        for _ in range(rounds):
            moved = False
            c2s = self.client.data_to_send()
            if c2s:
                moved = True
                self._record_c2s(c2s)
                self._on_server_events(self.server.receive_data(c2s))
            self._drain()
            self._out += self.server.data_to_send()
            if self._out:
                moved = True
                data = bytes(self._out)
                self._out.clear()
                for chunk in self.chunker(data):
                    self.reads.append(chunk)
                    self.events.extend(self.client.receive_data(chunk))
            if not moved:
                return self.events[start:]
        raise AssertionError("pump never went quiet")

    def deliver(self, data: bytes) -> list[Event]:
        """Hand ``data`` to the client as one read, bypassing the chunker."""
        self._flush_h2()
        assert not self._out
        self.reads.append(data)
        events = self.client.receive_data(data)
        self.events.extend(events)
        return events

    def _record_c2s(self, data: bytes) -> None:
        if not self._c2s_preface_seen:
            assert data.startswith(PREFACE), "client did not start with the preface"
            data = data[len(PREFACE) :]
            self._c2s_preface_seen = True
        self.client_frames.extend(parse_frames(data))

    def _on_server_events(self, events: list[Any]) -> None:
        for ev in events:
            self.server_events.append(ev)
            if isinstance(ev, h2.events.RequestReceived):
                self.requests[ev.stream_id] = Request(ev.stream_id, list(ev.headers))
                if ev.stream_ended is not None:
                    self.requests[ev.stream_id].ended = True
            elif isinstance(ev, h2.events.DataReceived):
                req = self.requests[ev.stream_id]
                req.data += ev.data
                req.data_frames += 1
                if ev.stream_ended is not None:
                    req.ended = True
                if self.auto_ack and ev.flow_controlled_length:
                    self.server.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.requests[ev.stream_id].ended = True
            elif isinstance(ev, h2.events.StreamReset):
                if ev.stream_id in self.requests:
                    self.requests[ev.stream_id].reset_code = int(ev.error_code)
            elif isinstance(ev, h2.events.PingAckReceived):
                self.pings_acked.append(bytes(ev.ping_data))

    def _drain(self) -> None:
        """Send queued response items in order per stream, as far as flow control
        allows; streams take turns one frame at a time, as real servers interleave."""
        progress = True
        while progress:
            progress = False
            for sid, items in list(self._queue.items()):
                if items and self._send_head(sid, items):
                    progress = True
                if not items:
                    del self._queue[sid]

    def _send_head(self, sid: int, items: deque[tuple[str, Any]]) -> bool:
        """Send (part of) the first queued item of a stream; False if it must wait."""
        srv = self.server
        kind, arg = items[0]
        if kind == "headers":
            headers, end = arg
            srv.send_headers(sid, headers, end_stream=end)
            items.popleft()
            return True
        data, end, pad = arg
        cost = len(data) + (pad + 1 if pad is not None else 0)
        window = srv.local_flow_control_window(sid)
        max_frame = srv.max_outbound_frame_size
        if cost <= min(window, max_frame):
            srv.send_data(sid, data, end_stream=end, pad_length=pad)
            items.popleft()
            return True
        if pad is not None or window <= 0:
            return False  # padded items go out whole; wait for window
        # Send what fits and keep the rest at the head.
        n = min(window, max_frame)
        srv.send_data(sid, data[:n])
        items[0] = ("data", (data[n:], end, None))
        return True

    def _flush_h2(self) -> None:
        self._drain()
        self._out += self.server.data_to_send()

    # ----------------------------------------------------------- requests

    def sid(self, call_id: int) -> int:
        """The stream id the client gave a call (asserts it has one)."""
        sid = self.client._calls[call_id].stream_id
        assert sid is not None, f"call {call_id} has no stream"
        return sid

    def request(self, call_id: int) -> Request:
        return self.requests[self.sid(call_id)]

    def call_events(self, call_id: int) -> list[Event]:
        return [e for e in self.events if getattr(e, "call_id", None) == call_id]

    def ended(self, call_id: int) -> CallEnded:
        """The one CallEnded of a call (asserts there is exactly one)."""
        ends = [e for e in self.call_events(call_id) if isinstance(e, CallEnded)]
        assert len(ends) == 1, f"call {call_id}: {len(ends)} CallEnded events: {ends}"
        return ends[0]

    def is_open(self, call_id: int) -> bool:
        return not any(isinstance(e, CallEnded) for e in self.call_events(call_id))

    def messages(self, call_id: int) -> list[bytes]:
        return [e.data for e in self.call_events(call_id) if isinstance(e, MessageReceived)]

    def response_headers(self, call_id: int) -> list[ResponseHeaders]:
        return [e for e in self.call_events(call_id) if isinstance(e, ResponseHeaders)]

    def terminations(self) -> list[ConnectionTerminated]:
        return [e for e in self.events if isinstance(e, ConnectionTerminated)]

    def ping_acks(self) -> list[PingAcknowledged]:
        return [e for e in self.events if isinstance(e, PingAcknowledged)]

    def frames(self, kind: type, stream_id: int | None = None) -> list[Any]:
        """Frames of one type the client sent (optionally on one stream)."""
        return [
            f
            for f in self.client_frames
            if isinstance(f, kind) and (stream_id is None or f.stream_id == stream_id)
        ]

    # ------------------------------------------------------------ answers

    def _enqueue(self, sid: int, kind: str, arg: Any) -> None:
        self._queue.setdefault(sid, deque()).append((kind, arg))

    def send_headers(
        self,
        sid: int,
        *,
        status: int = 200,
        content_type: bytes | None = b"application/grpc",
        extra: Sequence[tuple[bytes, bytes]] = (),
        end: bool = False,
    ) -> None:
        """Response headers (``end`` makes them a Trailers-Only or final response)."""
        headers = [(b":status", str(status).encode())]
        if content_type is not None:
            headers.append((b"content-type", content_type))
        headers.extend(extra)
        self._enqueue(sid, "headers", (headers, end))

    def send_data(
        self,
        sid: int,
        data: bytes,
        *,
        end: bool = False,
        cuts: Sequence[int] = (),
        pad: int | None = None,
    ) -> None:
        """Raw DATA bytes, split into frames at ``cuts`` (sizes); padding optional."""
        pieces = []
        pos = 0
        for size in cuts:
            if pos >= len(data):
                break
            pieces.append(data[pos : pos + size])
            pos += size
        if pos < len(data) or not pieces:
            pieces.append(data[pos:])
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            self._enqueue(sid, "data", (piece, end and last, pad))

    def send_messages(
        self,
        sid: int,
        payloads: Sequence[bytes],
        *,
        end: bool = False,
        cuts: Sequence[int] = (),
        flag: int = 0,
    ) -> None:
        """Frame and send messages; ``cuts`` sets the DATA frame sizes."""
        data = b"".join(frame_message(p, flag) for p in payloads)
        self.send_data(sid, data, end=end, cuts=cuts)

    def send_trailers(
        self,
        sid: int,
        code: int = 0,
        message: bytes | None = None,
        extra: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        headers = [(b"grpc-status", str(code).encode())]
        if message is not None:
            headers.append((b"grpc-message", message))
        headers.extend(extra)
        self._enqueue(sid, "headers", (headers, True))

    def trailers_only(
        self,
        sid: int,
        code: int,
        message: bytes | None = None,
        extra: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        headers = [(b"grpc-status", str(code).encode())]
        if message is not None:
            headers.append((b"grpc-message", message))
        self.send_headers(sid, extra=[*headers, *extra], end=True)

    def unary_ok(self, sid: int, payloads: Sequence[bytes] = (b"ok",)) -> None:
        self.send_headers(sid)
        self.send_messages(sid, payloads)
        self.send_trailers(sid)

    def reset(self, sid: int, code: int) -> None:
        self._flush_h2()
        self.server.reset_stream(sid, error_code=code)
        self._out += self.server.data_to_send()

    def ping(self, data: bytes) -> None:
        self._flush_h2()
        self.server.ping(data)
        self._out += self.server.data_to_send()

    def update_settings(self, settings: dict[int, int]) -> None:
        self._flush_h2()
        self.server.update_settings(settings)
        self._out += self.server.data_to_send()

    def window_update(self, increment: int, sid: int | None = None) -> None:
        """Open the server's receive window (connection-wide when ``sid`` is None)."""
        self._flush_h2()
        self.server.increment_flow_control_window(increment, stream_id=sid)
        self._out += self.server.data_to_send()

    def ack(self, n: int, sid: int) -> None:
        """Acknowledge received DATA (when ``auto_ack`` is off)."""
        self._flush_h2()
        self.server.acknowledge_received_data(n, sid)
        self._out += self.server.data_to_send()

    def raw(self, data: bytes) -> None:
        """Queue raw bytes for the client, after everything queued so far."""
        self._flush_h2()
        self._out += data

    def goaway(self, last_stream_id: int, code: int = 0, data: bytes = b"") -> None:
        # Built by hand: h2's own close_connection() would close the server
        # side too, and the tests need the server to keep answering.
        self.raw(GoAwayFrame(0, last_stream_id, code, data).serialize())

    def raw_data(self, sid: int, data: bytes, *, end: bool = False, pad: int | None = None) -> None:
        """A DATA frame outside h2's bookkeeping (ignores the server's windows)."""
        frame = DataFrame(sid, data)
        if end:
            frame.flags.add("END_STREAM")
        if pad is not None:
            frame.flags.add("PADDED")
            frame.pad_length = pad
        self.raw(frame.serialize())

    def raw_rst(self, sid: int, code: int) -> None:
        self.raw(RstStreamFrame(sid, error_code=code).serialize())

    def raw_window_update(self, sid: int, increment: int) -> None:
        self.raw(WindowUpdateFrame(sid, window_increment=increment).serialize())

    def header_block_frames(
        self,
        sid: int,
        headers: Sequence[tuple[bytes, bytes]],
        *,
        end: bool,
        pieces: int = 3,
    ) -> bytes:
        """A header block split into HEADERS + CONTINUATION frames, encoded by the
        server's own hpack encoder (so its dynamic table stays in step)."""
        self._flush_h2()
        block = self.server.encoder.encode(list(headers))
        step = max(1, -(-len(block) // pieces))
        parts = [block[i : i + step] for i in range(0, len(block), step)] or [b""]
        out = bytearray()
        for i, part in enumerate(parts):
            frame: Any = HeadersFrame(sid, part) if i == 0 else ContinuationFrame(sid, part)
            if i == 0 and end:
                frame.flags.add("END_STREAM")
            if i == len(parts) - 1:
                frame.flags.add("END_HEADERS")
            out += frame.serialize()
        return bytes(out)


def b64_unpadded(raw: bytes) -> bytes:
    return base64.b64encode(raw).rstrip(b"=")
