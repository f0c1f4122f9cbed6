"""A gRPC client connection over one HTTP/2 connection, without I/O.

Theory of operation
-------------------
:class:`GrpcConnection` owns an ``h2`` connection and speaks in calls, not
streams. A driver (the blocking or the asyncio front end) does three things:

* issues commands: :meth:`~GrpcConnection.start_call`,
  :meth:`~GrpcConnection.send_message`, :meth:`~GrpcConnection.end_send`,
  :meth:`~GrpcConnection.cancel`, :meth:`~GrpcConnection.acknowledge`;
* feeds every byte read from the network to :meth:`~GrpcConnection.receive_data`
  and dispatches the returned events by ``call_id``;
* writes whatever :meth:`~GrpcConnection.data_to_send` returns.

Commands only queue work. Outgoing messages are framed at once but reach h2
only in :meth:`data_to_send`, which packs everything queued on a call into as
few DATA frames as the flow-control windows and the peer's frame size allow:
the driver decides how often to flush, and so how much is coalesced.

Calls are not streams: when the server's MAX_CONCURRENT_STREAMS is reached, a
new call waits in a queue and gets a stream when another call ends.

Flow control is acknowledged when the application *consumes* a message (the
driver calls :meth:`acknowledge` with the message's credit), so a slow reader
makes the server wait. A message's credit covers every DATA frame it arrived
in, not only the one that completed it. Holding the bytes of an incomplete
message has a limit, though: a message larger than the window could never
complete, and the partial messages of several calls could fill the connection
window. So once the held partial bytes of a call reach a quarter of the stream
window, or those of all calls a quarter of the connection window, they are
acknowledged at once. With h2's own batching (it announces nothing until half
a window is due) and the driver's (under a quarter), the server never runs out
of window while the application keeps up.

Receive fast path
-----------------
h2 spends 10-17 µs of CPython time on every frame, and a Liftbridge
subscription is one small DATA frame per message. :meth:`receive_data`
therefore splits the input into frames itself and handles the common case --
a DATA frame without padding or END_STREAM on an open stream whose response
headers have arrived, outside a header block, once the server's first
SETTINGS went through h2 -- directly: it charges the connection's and the
stream's inbound windows in h2's own window managers (so WINDOW_UPDATEs and
flow-control errors stay exactly h2's) and decodes the payload. Every other
frame, and every DATA frame that does not qualify, goes through h2 unchanged
and in order. h2 only ever receives whole frames, so the splitter and h2
never disagree about where a frame starts.

GOAWAY
------
h2 closes its connection state on GOAWAY (python-hyper/h2#1181), which would
kill calls the server promised to finish. The h2 subclass here keeps the state
open; this module then refuses new calls itself, fails calls above the
GOAWAY's last stream id as never processed, and lets the others complete.
"""

from __future__ import annotations

import contextlib
import struct
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Union

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h2.stream

from .._status import STREAM_RESET_BY_SERVER, Metadata, Status, StatusCode
from .._version import __version__
from ..errors import (
    InvalidArgumentError,
    LiftbridgeError,
    MessageSizeError,
    ProtocolError,
    UnavailableError,
)
from .events import (
    CallEnded,
    ConnectionTerminated,
    Event,
    MessageReceived,
    PingAcknowledged,
    ResponseHeaders,
)
from .framing import ACCEPT_ENCODING, PREFIX, MessageDecoder, decompressor_for
from .metadata import (
    MetadataValue,
    decode_grpc_message,
    decode_metadata,
    encode_metadata,
    encode_timeout,
    status_from_http,
)

__all__ = ["DEFAULT_MAX_MESSAGE_SIZE", "GrpcConnection"]

#: grpc-go's default receive limit, which the Liftbridge server enforces on requests.
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024
DEFAULT_STREAM_WINDOW = 4 * 1024 * 1024
# Large, because credit is returned when the application consumes: with a
# connection window near the stream window, a few idle subscriptions would stall
# every other call on the connection. Each stream stays bounded by its own window.
DEFAULT_CONNECTION_WINDOW = 1 << 30
_DEFAULT_WINDOW = 65535
# Streams a call may open before the server's first SETTINGS say how many it
# allows. HTTP/2 starts with no limit, but a server that then announces one
# would refuse the streams above it; grpc-go's client assumes 100 too.
_STREAMS_BEFORE_SETTINGS = 100
USER_AGENT = f"grpc-python-pyliftbridge/{__version__}"

Buffer = Union[bytes, bytearray, memoryview]

# HTTP/2 frame header: 24-bit length (as 8 + 16 bits), type, flags, stream id.
_FRAME_HEADER = struct.Struct(">BHBBI")
_FRAME_AND_PREFIX = struct.Struct(">BHQHB")
_pack_prefix = PREFIX.pack
_unpack_prefix = PREFIX.unpack_from
_DATA, _HEADERS, _PUSH_PROMISE, _CONTINUATION = 0x0, 0x1, 0x5, 0x9
_END_STREAM, _END_HEADERS, _PADDED = 0x1, 0x4, 0x8
_FAST_STATES = frozenset({h2.stream.StreamState.OPEN, h2.stream.StreamState.HALF_CLOSED_LOCAL})
_H2_OPEN = h2.connection.ConnectionState.CLIENT_OPEN
_PING = 0x6
_WINDOW_UPDATE = 0x8
_ACK = 0x1
_MAX_WINDOW = 2**31 - 1
#: Frame header of a PING ACK: length 8, type PING, flag ACK, stream 0.
_PING_ACK_HEADER = b"\x00\x00\x08\x06\x01\x00\x00\x00\x00"
# Stream states in which h2 lets a DATA frame out.
_SEND_STATES = frozenset({h2.stream.StreamState.OPEN, h2.stream.StreamState.HALF_CLOSED_REMOTE})
_CLIENT_OPEN = h2.connection.ConnectionState.CLIENT_OPEN
# h2 < 4.4.1 is quadratic in the size of one receive_data call.
_H2_CHUNK = 65536

# PROTOCOL-HTTP2.md, "Errors": RST_STREAM code -> gRPC status.
_RESET_STATUS: dict[int, StatusCode] = {
    h2.errors.ErrorCodes.REFUSED_STREAM: StatusCode.UNAVAILABLE,
    h2.errors.ErrorCodes.CANCEL: StatusCode.CANCELLED,
    h2.errors.ErrorCodes.ENHANCE_YOUR_CALM: StatusCode.RESOURCE_EXHAUSTED,
    h2.errors.ErrorCodes.INADEQUATE_SECURITY: StatusCode.PERMISSION_DENIED,
}


class _H2Connection(h2.connection.H2Connection):
    """An h2 connection that stays usable after GOAWAY (h2#1181)."""

    def _receive_goaway_frame(self, frame: Any) -> tuple[list[Any], list[Any]]:
        # h2 would move to CLOSED and drop queued output; both would break the
        # calls the server still intends to finish. New streams are refused by
        # GrpcConnection instead.
        event = h2.events.ConnectionTerminated()
        event.error_code = frame.error_code
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


class _Call:
    __slots__ = (
        "call_id",
        "decoder",
        "end_pending",
        "ended",
        "h2_stream",
        "headers",
        "headers_received",
        "http_status",
        "local_closed",
        "out",
        "out_len",
        "partial_credit",
        "response_headers",
        "stream_id",
        "trailers",
        "unacked",
    )

    def __init__(self, call_id: int, headers: list[tuple[bytes, bytes]], max_size: int) -> None:
        self.call_id = call_id
        self.headers = headers
        self.stream_id: int | None = None
        self.h2_stream: Any = None  # h2's H2Stream, once the call has a stream
        self.out: list[bytes] = []
        self.out_len = 0
        self.end_pending = False
        self.local_closed = False
        self.ended = False
        self.decoder = MessageDecoder(max_size)
        self.unacked = 0
        #: Credit of DATA frames holding only part of the next message (not acknowledged).
        self.partial_credit = 0
        self.headers_received = False
        self.http_status = 0
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.trailers: list[tuple[bytes, bytes]] | None = None


class GrpcConnection:
    """The client side of gRPC over one HTTP/2 connection, as a state machine.

    Args:
        authority: ``host:port`` for the ``:authority`` header.
        scheme: ``"http"`` or ``"https"``, matching the transport.
        max_receive_message_size: largest message accepted from the server.
        max_send_message_size: largest message we agree to send.
        stream_window: our per-stream receive window (SETTINGS_INITIAL_WINDOW_SIZE).
        connection_window: our connection-level receive window.
        user_agent: the ``user-agent`` header.
        validate_headers: let h2 validate and normalise header blocks. Off by
            default: the header builder here emits valid, lower-case headers
            (tests run it with validation on), and validation costs about a
            fifth of the per-call header CPU.
        fast_path: handle plain DATA frames without h2's per-frame machinery.
    """

    def __init__(
        self,
        authority: str,
        *,
        scheme: str = "http",
        max_receive_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_send_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        stream_window: int = DEFAULT_STREAM_WINDOW,
        connection_window: int = DEFAULT_CONNECTION_WINDOW,
        user_agent: str = USER_AGENT,
        validate_headers: bool = False,
        fast_path: bool = True,
    ) -> None:
        if scheme not in ("http", "https"):
            raise InvalidArgumentError(f"scheme must be http or https, not {scheme!r}")
        if not 0 < stream_window < 2**31 or not 0 < connection_window < 2**31:
            raise InvalidArgumentError("flow-control windows must be between 1 and 2**31-1")
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=validate_headers,
            normalize_outbound_headers=validate_headers,
            validate_inbound_headers=validate_headers,
            normalize_inbound_headers=validate_headers,
        )
        self._h2 = _H2Connection(config=config)
        self._inbound_window = self._h2._inbound_flow_control_window_manager
        self._h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: stream_window,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
            },
        )
        self.max_receive_message_size = max_receive_message_size
        self.max_send_message_size = max_send_message_size
        self._connection_window = connection_window
        self._base_headers = [
            (b":method", b"POST"),
            (b":scheme", scheme.encode("ascii")),
        ]
        self._common_headers = [
            (b"te", b"trailers"),
            (b"content-type", b"application/grpc"),
            (b"user-agent", user_agent.encode("ascii")),
            (b"grpc-accept-encoding", ACCEPT_ENCODING.encode("ascii")),
        ]
        self._authority = authority.encode("ascii")
        self._calls: dict[int, _Call] = {}
        self._by_stream: dict[int, _Call] = {}
        self._queued: deque[_Call] = deque()
        self._dirty: list[_Call] = []
        self._pending_acks: dict[int, int] = {}
        self._pending_ack_total = 0
        self._ack_flush_threshold = max(1, min(stream_window, connection_window) // 4)
        # Limits on credit held for incomplete messages (see the module docstring).
        self._partial_total = 0
        self._partial_limit_stream = max(1, stream_window // 4)
        self._partial_limit_connection = max(1, max(connection_window, _DEFAULT_WINDOW) // 4)
        self._next_call_id = 1
        self._active = 0
        self._initiated = False
        self._fast_path = fast_path
        self._settings_seen = False
        self._in_header_block = False
        self._inbuf = bytearray()
        #: Last stream id of the server's GOAWAY, or None while none arrived.
        self.goaway_last_stream_id: int | None = None
        #: Why the connection can no longer be used, or None while it can.
        self.closed_reason: Status | None = None

    # ------------------------------------------------------------------ state

    @property
    def accepting_calls(self) -> bool:
        """False once GOAWAY arrived or the connection broke: start calls elsewhere."""
        return self.goaway_last_stream_id is None and self.closed_reason is None

    @property
    def active_calls(self) -> int:
        """Calls started and not yet ended (queued ones included)."""
        return sum(1 for c in self._calls.values() if not c.ended)

    def outbound_pending(self, call_id: int) -> int:
        """Bytes queued on a call that flow control has not let out yet."""
        call = self._calls.get(call_id)
        return 0 if call is None else call.out_len

    # --------------------------------------------------------------- commands

    def initiate(self) -> None:
        """Queue the connection preface, our SETTINGS and the window increase."""
        if self._initiated:
            return
        self._initiated = True
        self._h2.initiate_connection()
        increment = self._connection_window - _DEFAULT_WINDOW
        if increment > 0:
            self._h2.increment_flow_control_window(increment)

    def start_call(
        self,
        path: str,
        *,
        timeout: float | None = None,
        metadata: Iterable[tuple[str, MetadataValue]] = (),
    ) -> int:
        """Start a call to ``path`` (``/package.Service/Method``) and return its id.

        ``timeout`` is the time left until the call's deadline, sent as
        ``grpc-timeout``; the driver enforces the deadline itself and calls
        :meth:`cancel` with DEADLINE_EXCEEDED when it passes.

        Raises:
            UnavailableError: the connection no longer accepts calls.
            InvalidArgumentError: bad path or metadata.
        """
        if not self.accepting_calls:
            raise UnavailableError(
                "connection is closing", status=self.closed_reason or _GOAWAY_STATUS
            )
        if not path.startswith("/") or not path.isascii():
            raise InvalidArgumentError(f"invalid method path {path!r}")
        headers = [
            *self._base_headers,
            (b":path", path.encode("ascii")),
            (b":authority", self._authority),
        ]
        if timeout is not None:
            headers.append((b"grpc-timeout", encode_timeout(timeout).encode("ascii")))
        headers.extend(self._common_headers)
        headers.extend((k.encode("ascii"), v.encode("ascii")) for k, v in encode_metadata(metadata))
        call = _Call(self._next_call_id, headers, self.max_receive_message_size)
        self._next_call_id += 1
        self._calls[call.call_id] = call
        if self._queued or not self._open(call):
            self._queued.append(call)
        return call.call_id

    def send_message(self, call_id: int, payload: bytes, *, end: bool = False) -> None:
        """Queue one message on a call; ``end`` also half-closes the request side.

        Raises:
            MessageSizeError: the payload is over the send maximum.
            ProtocolError: the call does not exist or its request side is closed.
        """
        call = self._calls.get(call_id)
        if call is None or call.ended or call.end_pending or call.local_closed:
            call = self._sendable(call_id)  # raises the right error
        size = len(payload)
        if size > self.max_send_message_size:
            raise MessageSizeError(
                f"message of {size} bytes is larger than the send maximum of "
                f"{self.max_send_message_size} bytes"
            )
        out = call.out
        out.append(_pack_prefix(0, size))
        out.append(payload)
        call.out_len += size + 5
        if end:
            call.end_pending = True
        if len(out) == 2 or end:
            self._dirty.append(call)

    def send_messages(self, call_id: int, payloads: Sequence[bytes]) -> None:
        """Queue several messages on a call at once (see :meth:`send_message`)."""
        for payload in payloads:
            self.send_message(call_id, payload)

    def end_send(self, call_id: int) -> None:
        """Half-close the request side once everything queued has been sent."""
        call = self._sendable(call_id)
        call.end_pending = True
        self._dirty.append(call)

    def cancel(
        self,
        call_id: int,
        code: StatusCode = StatusCode.CANCELLED,
        message: str = "call cancelled by the client",
    ) -> list[Event]:
        """End a call locally: RST_STREAM(CANCEL) and a locally made status.

        Use ``StatusCode.DEADLINE_EXCEEDED`` when the deadline passed. Returns
        the call's :class:`CallEnded` event (empty if it had already ended).
        """
        call = self._calls.get(call_id)
        if call is None or call.ended:
            return []
        if call.stream_id is None:
            self._queued.remove(call)
        else:
            self._reset(call, h2.errors.ErrorCodes.CANCEL)
        return [self._end(call, Status(code, message))]

    def acknowledge(self, call_id: int, flow_controlled_length: int) -> bool:
        """Give back flow-control credit for consumed messages.

        Returns True when enough credit has piled up that the driver should
        flush :meth:`data_to_send` soon, rather than at its next write.
        """
        if flow_controlled_length <= 0:
            return False
        call = self._calls.get(call_id)
        if call is None:
            return False
        call.unacked -= flow_controlled_length
        sid = call.stream_id
        if sid is None:
            return False
        # _queue_ack, inlined: this runs once per message consumed.
        acks = self._pending_acks
        acks[sid] = acks.get(sid, 0) + flow_controlled_length
        total = self._pending_ack_total + flow_controlled_length
        self._pending_ack_total = total
        return total >= self._ack_flush_threshold

    def release(self, call_id: int) -> None:
        """Forget an ended call, acknowledging the credit of messages never consumed.

        A call that has not ended is cancelled first.
        """
        call = self._calls.get(call_id)
        if call is None:
            return
        if not call.ended:
            self.cancel(call_id)
        if call.unacked:
            self._queue_ack(call, call.unacked)
            call.unacked = 0
        del self._calls[call_id]

    def ping(self, opaque: bytes) -> None:
        """Queue a PING with 8 bytes of opaque data."""
        self._h2.ping(opaque)

    def close(self, error_code: int = 0) -> None:
        """Queue a GOAWAY: the driver should write it and close the transport."""
        if self.closed_reason is None:
            self.closed_reason = Status(StatusCode.UNAVAILABLE, "connection closed by the client")
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.close_connection(error_code=error_code)

    def connection_lost(self, message: str = "connection lost") -> list[Event]:
        """The transport broke: every call not ended fails with UNAVAILABLE."""
        if self.closed_reason is None:
            self.closed_reason = Status(StatusCode.UNAVAILABLE, message)
        events: list[Event] = []
        for call in list(self._calls.values()):
            if not call.ended:
                retry = call.stream_id is None
                events.append(self._end(call, self.closed_reason, transparent_retry=retry))
        return events

    # ------------------------------------------------------------------ output

    def data_to_send(self) -> bytes:
        """Return every byte that should be written now (may be empty)."""
        h2c = self._h2
        if self._pending_acks:
            for sid, n in self._pending_acks.items():
                h2c.acknowledge_received_data(n, sid)
            self._pending_acks.clear()
            self._pending_ack_total = 0
        if self._dirty:
            dirty, self._dirty = self._dirty, []
            for call in dirty:
                if not call.ended and call.stream_id is not None:
                    self._flush(call)
        data: bytes = h2c.data_to_send()
        return data

    # ------------------------------------------------------------------- input

    def receive_data(self, data: Buffer) -> list[Event]:
        """Process bytes read from the network and return the resulting events."""
        if self.closed_reason is not None and self.closed_reason.code is StatusCode.INTERNAL:
            return []
        # Events are collected into one list as they are made, so a protocol
        # error later in the same read cannot swallow them: a call that ended
        # before the error must still get its (one) CallEnded.
        events: list[Event] = []
        try:
            if self._fast_path:
                self._receive_split(data, events)
            else:
                self._receive_h2(data, events)
        except h2.exceptions.ProtocolError as exc:
            events.extend(
                self._protocol_failure(
                    f"HTTP/2 protocol error from the server: {exc}",
                    int(getattr(exc, "error_code", h2.errors.ErrorCodes.PROTOCOL_ERROR)),
                )
            )
        return events

    def _receive_h2(self, data: Buffer, events: list[Event]) -> None:
        size = len(data)
        if size <= _H2_CHUNK:
            events.extend(self._translate(self._h2.receive_data(data)))
            return
        view = memoryview(data)
        for start in range(0, size, _H2_CHUNK):
            events.extend(self._translate(self._h2.receive_data(view[start : start + _H2_CHUNK])))

    def _receive_split(self, data: Buffer, events: list[Event]) -> None:
        # Split the input into whole frames. Runs of frames that need h2 go to
        # it as they are; plain DATA frames on open streams are handled here.
        # h2 only ever gets whole frames, so it never holds a partial frame
        # that the splitter would then misread as a frame header. That holds
        # from the first byte on, before the fast path may run (which is only
        # once the server's first SETTINGS went through h2).
        buf = self._inbuf
        if buf:
            buf += data
            data = bytes(buf)
            buf.clear()
        elif type(data) is not bytes:
            # One copy per read, so that each message below is a plain bytes slice.
            data = bytes(data)
        view = memoryview(data)
        end = len(view)
        pos = 0
        run = -1  # start of the pending run of frames for h2
        h2c = self._h2
        max_frame = h2c.max_inbound_frame_size
        unpack = _FRAME_HEADER.unpack_from
        by_stream = self._by_stream
        unpack_both = _FRAME_AND_PREFIX.unpack_from
        window = self._inbound_window
        fast_states = _FAST_STATES
        append = events.append
        # The "hot" stream: after one single-message DATA frame was checked in
        # full, more single-message frames for the same stream with no other
        # frame in between cannot find it in another state, so they only
        # charge a local allowance; the window counters are brought up to date
        # (``commit``) before anything else can look at them.
        hot_tag = -1
        hot_cid = hot_limit = allowance = consumed = 0
        hot_call: Any = None
        hot_stream: Any = None

        def commit() -> None:
            nonlocal consumed, hot_tag
            if consumed:
                window.current_window_size -= consumed
                hot_stream._inbound_window_manager.current_window_size -= consumed
                hot_stream._actual_content_length += consumed
                hot_call.unacked += consumed
                consumed = 0
            hot_tag = -1

        while end - pos >= 9:
            if end - pos >= 14:
                # The frame header and, should this be DATA, a message prefix,
                # with type, flags, stream id, compressed flag and the top
                # byte of the message size read as one 64-bit "tag": a plain
                # single-message DATA frame of the hot stream has tag
                # ``hot_sid << 16``.
                hi, lo, tag, mhi, mlo = unpack_both(data, pos)
                length = (hi << 16) | lo
                stop = pos + 9 + length
                if (
                    tag == hot_tag
                    and (mhi << 8 | mlo) + 5 == length
                    and length <= hot_limit
                    and stop <= end
                    and length <= allowance
                ):
                    allowance -= length
                    consumed += length
                    append(MessageReceived(hot_cid, data[pos + 14 : stop], length))
                    pos = stop
                    continue
                ftype = tag >> 56
                flags = (tag >> 48) & 0xFF
                sid = (tag >> 16) & 0xFFFFFFFF
                mflag = (tag >> 8) & 0xFF
                msize = ((tag & 0xFF) << 24) | (mhi << 8) | mlo
            else:
                hi, lo, ftype, flags, sid = unpack(data, pos)
                mflag = msize = -1
                length = (hi << 16) | lo
                stop = pos + 9 + length
            if hot_tag >= 0:
                commit()
            if length > max_frame:
                # The limit may have grown with a SETTINGS ACK still in the run.
                if run >= 0:
                    self._receive_h2(view[run:pos], events)
                    run = -1
                max_frame = h2c.max_inbound_frame_size
                if length > max_frame:
                    # Refused from its header: h2 would first buffer the whole
                    # frame (up to 16 MiB) and only then raise FRAME_SIZE_ERROR.
                    raise h2.exceptions.FrameTooLargeError(
                        f"Received overlong frame: length {length}, max {max_frame}"
                    )
            if stop > end:
                break
            if (
                ftype == 0  # DATA
                and not flags & 0x9  # END_STREAM, PADDED
                and not self._in_header_block
                and self._settings_seen
                and sid in by_stream  # (a set reserved bit never matches)
            ):
                if run >= 0:
                    self._receive_h2(view[run:pos], events)
                    run = -1
                # Looked up after h2 has seen the frames before this one.
                call = by_stream.get(sid)
                stream = None if call is None else call.h2_stream
                if (
                    call is not None
                    and stream is not None
                    and stream.state_machine.state in fast_states
                    and stream._expected_content_length is None
                    and not call.ended
                    # DATA before the response HEADERS is a connection error in h2
                    # ("cannot receive data before headers"); let h2 raise it.
                    and call.headers_received
                ):
                    # What h2's _receive_data_frame does, on its own window
                    # managers: an overrun is h2's FlowControlError.
                    window.current_window_size -= length
                    stream_window = stream._inbound_window_manager
                    stream_window.current_window_size -= length
                    if window.current_window_size < 0 or stream_window.current_window_size < 0:
                        raise h2.exceptions.FlowControlError("Flow control window shrunk below 0")
                    stream._actual_content_length += length
                    decoder = call.decoder
                    if (
                        msize + 5 == length
                        and not mflag
                        and not decoder._buf
                        and not call.partial_credit
                        and msize <= decoder.max_message_size
                    ):
                        # The usual frame (grpc-go writes one message per DATA
                        # frame): one whole uncompressed message.
                        call.unacked += length
                        append(MessageReceived(call.call_id, data[pos + 14 : stop], length))
                        hot_tag, hot_call, hot_stream = sid << 16, call, stream
                        hot_cid = call.call_id
                        hot_limit = min(max_frame, decoder.max_message_size + 5, 0xFFFFFF)
                        allowance = min(
                            window.current_window_size, stream_window.current_window_size
                        )
                    else:
                        self._on_data(call, data[pos + 9 : stop], length, events)
                    pos = stop
                    continue
                run = pos
            elif (
                ftype in (_PING, _WINDOW_UPDATE)
                and not self._in_header_block
                and self._settings_seen
            ):
                if run >= 0:
                    self._receive_h2(view[run:pos], events)
                    run = -1
                if not self._fast_control(ftype, flags, sid, data[pos + 9 : stop], events):
                    run = pos
            else:
                if ftype in (_HEADERS, _PUSH_PROMISE):
                    self._in_header_block = not flags & _END_HEADERS
                elif ftype == _CONTINUATION and flags & _END_HEADERS:
                    self._in_header_block = False
                if run < 0:
                    run = pos
            pos = stop
        if hot_tag >= 0:
            commit()
        if run >= 0:
            self._receive_h2(view[run:pos], events)
        if pos < end:
            self._inbuf += view[pos:]

    def _fast_control(
        self, ftype: int, flags: int, sid: int, payload: bytes, events: list[Event]
    ) -> bool:
        """Handle a plain PING or WINDOW_UPDATE as h2 would; False leaves it to h2.

        grpc-go sends a WINDOW_UPDATE and a PING (its bandwidth estimate) with
        many of its answers; through h2 they cost more than the message they
        come with. Anything unusual (a bad length or increment, an overflow,
        a stream not plainly open, a connection that is closing) goes to h2,
        which raises or handles it.
        """
        h2c = self._h2
        if h2c.state_machine.state is not _H2_OPEN:
            return False
        if ftype == _PING:
            if len(payload) != 8 or sid:
                return False
            if flags & _ACK:
                events.append(PingAcknowledged(payload))
            else:
                h2c._data_to_send += _PING_ACK_HEADER + payload
            return True
        if len(payload) != 4:
            return False
        increment = int.from_bytes(payload, "big") & 0x7FFFFFFF
        if not increment:
            return False
        if sid == 0:
            window = h2c.outbound_flow_control_window + increment
            if window > _MAX_WINDOW:
                return False
            h2c.outbound_flow_control_window = window
        else:
            call = self._by_stream.get(sid)
            stream = None if call is None else call.h2_stream
            if stream is None or stream.state_machine.state not in _FAST_STATES:
                return False
            window = stream.outbound_flow_control_window + increment
            if window > _MAX_WINDOW:
                return False
            stream.outbound_flow_control_window = window
        # As for h2's WindowUpdated: calls held back by the window may go on.
        self._dirty.extend(c for c in self._by_stream.values() if c.out or c.end_pending)
        return True

    # ---------------------------------------------------------------- helpers

    def _sendable(self, call_id: int) -> _Call:
        call = self._calls.get(call_id)
        if call is None or call.ended:
            raise ProtocolError(f"call {call_id} is not active")
        if call.end_pending or call.local_closed:
            raise ProtocolError(f"call {call_id} has already closed its request side")
        return call

    def _open(self, call: _Call) -> bool:
        """Give a call a stream if the server allows one more; False if it must wait."""
        h2c = self._h2
        limit = h2c.remote_settings.max_concurrent_streams
        if not self._settings_seen:
            limit = min(limit, _STREAMS_BEFORE_SETTINGS)
        if self._active >= limit:
            return False
        sid = h2c.get_next_available_stream_id()
        end = call.end_pending and not call.out
        try:
            h2c.send_headers(sid, call.headers, end_stream=end)
        except h2.exceptions.TooManyStreamsError:
            return False
        call.stream_id = sid
        call.h2_stream = h2c.streams[sid]
        call.local_closed = end
        self._by_stream[sid] = call
        self._active += 1
        if call.out or (call.end_pending and not end):
            self._dirty.append(call)
        return True

    def _open_queued(self) -> None:
        while self._queued and self.accepting_calls:
            if not self._open(self._queued[0]):
                return
            self._queued.popleft()

    def _flush(self, call: _Call) -> None:
        h2c = self._h2
        sid = call.stream_id
        assert sid is not None  # only calls with a stream are flushed
        if call.out:
            out = call.out
            data = out[0] if len(out) == 1 else b"".join(out)
            size = len(data)
            pos = 0
            max_frame = h2c.max_outbound_frame_size
            stream = call.h2_stream
            # DATA frames without END_STREAM are written here rather than by
            # h2.send_data (about 10 us of CPython per frame): the same checks
            # and the same window bookkeeping on h2's own counters, and the
            # frame appended to h2's own output buffer, so ordering with
            # every other frame h2 writes is kept.
            direct = (
                stream is not None
                and stream.state_machine.state in _SEND_STATES
                and h2c.state_machine.state is _CLIENT_OPEN
            )
            view = memoryview(data)
            while pos < size:
                window = (
                    min(h2c.outbound_flow_control_window, stream.outbound_flow_control_window)
                    if direct
                    else h2c.local_flow_control_window(sid)
                )
                if window <= 0:
                    # Also right for a window made negative by a SETTINGS change.
                    break
                chunk = min(window, max_frame, size - pos)
                last = pos + chunk == size
                if direct and not (last and call.end_pending):
                    buf = h2c._data_to_send
                    buf += _FRAME_HEADER.pack(chunk >> 16, chunk & 0xFFFF, _DATA, 0, sid)
                    buf += view[pos : pos + chunk]
                    stream.outbound_flow_control_window -= chunk
                    h2c.outbound_flow_control_window -= chunk
                else:
                    h2c.send_data(
                        sid, data[pos : pos + chunk], end_stream=last and call.end_pending
                    )
                pos += chunk
            if pos < size:
                rest = data[pos:]
                call.out = [rest]
                call.out_len = len(rest)
                return
            call.out = []
            call.out_len = 0
            if call.end_pending:
                call.local_closed = True
                return
        if call.end_pending and not call.local_closed:
            h2c.end_stream(sid)
            call.local_closed = True

    def _queue_ack(self, call: _Call, n: int) -> None:
        sid = call.stream_id
        if sid is None:
            return
        self._pending_acks[sid] = self._pending_acks.get(sid, 0) + n
        self._pending_ack_total += n

    def _reset(self, call: _Call, code: int) -> None:
        if call.stream_id is None:
            return
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self._h2.reset_stream(call.stream_id, error_code=code)

    def _release_partial(self, call: _Call) -> None:
        """Acknowledge the credit held for a call's incomplete message."""
        held = call.partial_credit
        if held:
            call.partial_credit = 0
            self._partial_total -= held
            self._queue_ack(call, held)

    def _end(
        self,
        call: _Call,
        status: Status,
        transparent_retry: bool = False,
        error: LiftbridgeError | None = None,
    ) -> CallEnded:
        call.ended = True
        call.out = []
        call.out_len = 0
        # The incomplete message will never be delivered: return its credit.
        self._release_partial(call)
        if call.stream_id is not None:
            self._by_stream.pop(call.stream_id, None)
            self._active -= 1
            self._open_queued()
        return CallEnded(call.call_id, status, transparent_retry, error)

    def _on_data(self, call: _Call, payload: Buffer, length: int, events: list[Event]) -> None:
        if call.ended:
            # Late data on a call we gave up on: return the credit at once.
            self._queue_ack(call, length)
            return
        try:
            messages = call.decoder.feed(payload)
        except LiftbridgeError as exc:
            code = (
                StatusCode.RESOURCE_EXHAUSTED
                if isinstance(exc, MessageSizeError)
                else StatusCode.INTERNAL
            )
            self._queue_ack(call, length)
            self._reset(call, h2.errors.ErrorCodes.CANCEL)
            status = Status(code, str(exc))
            exc.status = status
            events.append(self._end(call, status, error=exc))
            return
        if not messages:
            # Part of a message: the credit waits for the message, unless
            # holding more could stall the stream or the connection.
            call.partial_credit += length
            self._partial_total += length
            if (
                call.partial_credit >= self._partial_limit_stream
                or self._partial_total >= self._partial_limit_connection
            ):
                self._release_partial(call)
            return
        # The frames held so far belong to the first message completed here;
        # all the credit rides on the last one (and is returned with it).
        credit = length + call.partial_credit
        self._partial_total -= call.partial_credit
        call.partial_credit = 0
        call.unacked += credit
        cid = call.call_id
        last = len(messages) - 1
        for i, message in enumerate(messages):
            events.append(MessageReceived(cid, message, credit if i == last else 0))

    def _protocol_failure(self, message: str, error_code: int) -> list[Event]:
        status = Status(StatusCode.INTERNAL, message)
        # h2 queues its own GOAWAY for the errors it finds (and closes its
        # state machine); only an error found on the fast path needs ours.
        if self._h2.state_machine.state is not h2.connection.ConnectionState.CLOSED:
            self.close(error_code)
        self.closed_reason = status
        events: list[Event] = []
        for call in list(self._calls.values()):
            if not call.ended:
                events.append(self._end(call, status))
        return events

    def _translate(self, h2_events: list[Any]) -> list[Event]:
        events: list[Event] = []
        by_stream = self._by_stream
        for ev in h2_events:
            if isinstance(ev, h2.events.DataReceived):
                call = by_stream.get(ev.stream_id)
                if call is not None:
                    self._on_data(call, ev.data, ev.flow_controlled_length, events)
                else:
                    self._h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if ev.stream_ended is not None and call is not None:
                    self._stream_ended(call, events)
            elif isinstance(ev, h2.events.ResponseReceived):
                call = by_stream.get(ev.stream_id)
                if call is not None:
                    ended = ev.stream_ended is not None
                    self._response_headers(call, ev.headers, ended, events)
                    if ended:
                        self._stream_ended(call, events)
            elif isinstance(ev, h2.events.TrailersReceived):
                call = by_stream.get(ev.stream_id)
                if call is not None:
                    call.trailers = list(ev.headers)
                    if ev.stream_ended is not None:
                        self._stream_ended(call, events)
            elif isinstance(ev, h2.events.StreamReset):
                call = by_stream.get(ev.stream_id)
                if call is not None and not call.ended:
                    events.append(self._reset_status(call, ev.error_code))
            elif isinstance(ev, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
                self._dirty.extend(c for c in by_stream.values() if c.out or c.end_pending)
                if isinstance(ev, h2.events.RemoteSettingsChanged):
                    self._settings_seen = True
                    self._open_queued()
            elif isinstance(ev, h2.events.PingAckReceived):
                events.append(PingAcknowledged(bytes(ev.ping_data)))
            elif isinstance(ev, h2.events.ConnectionTerminated):
                events.extend(self._goaway(ev))
        return events

    def _response_headers(
        self,
        call: _Call,
        headers: list[tuple[bytes, bytes]],
        stream_ended: bool,
        events: list[Event],
    ) -> None:
        call.headers_received = True
        call.response_headers = list(headers)
        has_grpc_status = False
        for name, value in headers:
            if name == b":status":
                try:
                    call.http_status = int(value)
                except ValueError:
                    call.http_status = 0
            elif name == b"grpc-status":
                has_grpc_status = True
            elif name == b"grpc-encoding":
                try:
                    call.decoder.decompress = decompressor_for(value.decode("ascii", "replace"))
                except ProtocolError as exc:
                    self._reset(call, h2.errors.ErrorCodes.CANCEL)
                    events.append(self._end(call, Status(StatusCode.INTERNAL, str(exc))))
                    return
        if call.http_status != 200:
            if not stream_ended and not has_grpc_status:
                # Not a gRPC response (a proxy's error page, say): whatever body
                # follows is no stream of gRPC messages and must not be parsed
                # as one. The HTTP status decides (doc/http-grpc-status-mapping.md).
                self._reset(call, h2.errors.ErrorCodes.CANCEL)
                metadata = decode_metadata(headers)
                events.append(self._end(call, status_from_http(call.http_status, metadata)))
            return
        if not stream_ended:
            # Trailers-Only (one HEADERS frame that ends the stream) carries no
            # initial metadata: all of it is trailing and comes with CallEnded.
            events.append(ResponseHeaders(call.call_id, decode_metadata(headers)))

    def _stream_ended(self, call: _Call, events: list[Event]) -> None:
        if call.ended:
            return
        if call.trailers is not None:
            status = _status_from_trailers(call.trailers)
        elif call.http_status != 200:
            metadata = decode_metadata(call.response_headers)
            status = status_from_http(call.http_status, metadata)
            if call.http_status and any(n == b"grpc-status" for n, _ in call.response_headers):
                status = _status_from_trailers(call.response_headers)
        else:
            # Trailers-Only: the one HEADERS frame carries grpc-status.
            status = _status_from_trailers(call.response_headers)
        if status.ok and call.decoder.buffered:
            status = Status(
                StatusCode.INTERNAL, "stream ended inside a message", status.trailing_metadata
            )
        if not call.local_closed:
            # The server finished before we did; free the stream (P "Early Server Closure").
            self._reset(call, h2.errors.ErrorCodes.NO_ERROR)
            call.local_closed = True
        events.append(self._end(call, status))

    def _reset_status(self, call: _Call, error_code: int) -> CallEnded:
        if call.trailers is not None:
            return self._end(call, _status_from_trailers(call.trailers))
        code = _RESET_STATUS.get(error_code, StatusCode.INTERNAL)
        try:
            name = h2.errors.ErrorCodes(error_code).name
        except ValueError:
            name = str(error_code)
        retry = error_code == h2.errors.ErrorCodes.REFUSED_STREAM
        return self._end(call, Status(code, f"{STREAM_RESET_BY_SERVER} ({name})"), retry)

    def _goaway(self, ev: Any) -> list[Event]:
        last = ev.last_stream_id
        previous = self.goaway_last_stream_id
        self.goaway_last_stream_id = last if previous is None else min(previous, last)
        data = bytes(ev.additional_data or b"")
        events: list[Event] = [ConnectionTerminated(int(ev.error_code), last, data)]
        message = f"server sent GOAWAY ({data.decode('utf-8', 'replace') or ev.error_code})"
        status = Status(StatusCode.UNAVAILABLE, message)
        for call in list(self._calls.values()):
            if call.ended:
                continue
            if call.stream_id is None:
                self._queued.remove(call)
                events.append(self._end(call, status, transparent_retry=True))
            elif call.stream_id > self.goaway_last_stream_id:
                self._reset(call, h2.errors.ErrorCodes.CANCEL)
                events.append(self._end(call, status, transparent_retry=True))
        return events


_GOAWAY_STATUS = Status(StatusCode.UNAVAILABLE, "server sent GOAWAY")


def _status_from_trailers(trailers: list[tuple[bytes, bytes]]) -> Status:
    code: StatusCode | None = None
    message = ""
    for name, value in trailers:
        if name == b"grpc-status":
            try:
                code = StatusCode.from_wire(int(value))
            except ValueError:
                code = StatusCode.UNKNOWN
                message = f"malformed grpc-status {value!r}"
        elif name == b"grpc-message":
            message = decode_grpc_message(value.decode("utf-8", "replace"))
    metadata: Metadata = decode_metadata(trailers)
    if code is None:
        return Status(StatusCode.UNKNOWN, "response ended without grpc-status", metadata)
    return Status(code, message, metadata)
