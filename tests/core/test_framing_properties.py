"""Property tests for message framing and header encodings.

Example counts stay small so the whole file runs in seconds, on PyPy too.
"""

from __future__ import annotations

import re
import struct
import zlib
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pyliftbridge import StatusCode
from pyliftbridge._core.connection import GrpcConnection
from pyliftbridge._core.events import CallEnded, MessageReceived
from pyliftbridge._core.framing import MessageDecoder, decompressor_for, encode_message
from pyliftbridge._core.metadata import (
    decode_grpc_message,
    decode_metadata,
    encode_grpc_message,
    encode_metadata,
    encode_timeout,
)
from pyliftbridge.errors import (
    InvalidArgumentError,
    LiftbridgeError,
    MessageSizeError,
    ProtocolError,
)

from .peer import AUTHORITY, Mirror, Peer, cut_stream, frame_message

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

messages_st = st.lists(
    st.one_of(st.just(b""), st.binary(max_size=64), st.binary(min_size=200, max_size=3000)),
    max_size=25,
)
cuts_st = st.lists(st.integers(min_value=1, max_value=4000), max_size=40)
# Read sizes: small ones often, so reads end inside frame headers and inside
# the server's first frames (SETTINGS, WINDOW_UPDATE) as well.
read_cuts_st = st.lists(
    st.one_of(st.integers(min_value=1, max_value=64), st.integers(min_value=1, max_value=4000)),
    max_size=40,
)


def chunk(data: bytes, cuts: list[int]) -> list[bytes]:
    """Cut ``data`` at the given sizes (cycling); [] cuts means one piece."""
    if not cuts:
        return [data]
    out = []
    pos = 0
    i = 0
    while pos < len(data):
        out.append(data[pos : pos + cuts[i % len(cuts)]])
        pos += cuts[i % len(cuts)]
        i += 1
    return out


# ------------------------------------------------------------- MessageDecoder


@FAST
@given(messages_st, cuts_st)
def test_decoder_any_chunking_gives_same_messages(messages, cuts):
    data = b"".join(encode_message(m) for m in messages)
    decoder = MessageDecoder(max_message_size=4096)
    out = []
    for piece in chunk(data, cuts):
        out.extend(decoder.feed(piece))
    assert out == messages
    assert decoder.buffered == 0


@FAST
@given(messages_st, cuts_st, st.sampled_from(["bytes", "bytearray", "memoryview"]))
def test_decoder_accepts_every_buffer_type(messages, cuts, kind):
    data = b"".join(encode_message(m) for m in messages)
    wrap = {"bytes": bytes, "bytearray": bytearray, "memoryview": memoryview}[kind]
    decoder = MessageDecoder(max_message_size=4096)
    out = []
    for piece in chunk(data, cuts):
        out.extend(decoder.feed(wrap(piece)))
    assert out == messages
    assert all(type(m) is bytes for m in out)


@FAST
@given(
    st.lists(st.binary(max_size=300), max_size=10),
    cuts_st,
    st.sampled_from(["gzip", "deflate"]),
)
def test_decoder_compressed_messages_any_chunking(messages, cuts, encoding):
    wbits = 31 if encoding == "gzip" else 15
    data = b""
    for i, m in enumerate(messages):
        if i % 2:
            data += encode_message(m)  # flag 0 stays legal under an encoding
        else:
            c = zlib.compressobj(wbits=wbits)
            data += frame_message(c.compress(m) + c.flush(), flag=1)
    decoder = MessageDecoder(max_message_size=4096)
    decoder.decompress = decompressor_for(encoding)
    out = []
    for piece in chunk(data, cuts):
        out.extend(decoder.feed(piece))
    assert out == messages


@FAST
@given(st.binary(max_size=2000), cuts_st, st.sampled_from([None, "gzip", "deflate"]))
def test_decoder_random_bytes_never_raise_foreign_errors(data, cuts, encoding):
    decoder = MessageDecoder(max_message_size=500)
    decoder.decompress = decompressor_for(encoding)
    try:
        for piece in chunk(data, cuts):
            for message in decoder.feed(piece):
                assert len(message) <= 500
    except LiftbridgeError as exc:
        assert isinstance(exc, (ProtocolError, MessageSizeError))


@FAST
@given(st.integers(min_value=0, max_value=2**32 - 1), st.integers(min_value=0, max_value=10_000))
def test_decoder_checks_size_from_prefix_alone(size, limit):
    decoder = MessageDecoder(max_message_size=limit)
    prefix = struct.pack(">BI", 0, size)
    if size > limit:
        with pytest.raises(MessageSizeError):
            decoder.feed(prefix)
    else:
        assert decoder.feed(prefix) == ([b""] if size == 0 else [])


# ------------------------------------------ through GrpcConnection and the peer


@SLOW
@given(messages_st, cuts_st, read_cuts_st, st.booleans())
def test_connection_any_frame_and_read_split_gives_same_messages(
    messages, frame_cuts, read_cuts, small_window
):
    kwargs = {"stream_window": 65535, "connection_window": 65535} if small_window else {}
    mirror = Mirror(
        [
            GrpcConnection(AUTHORITY, fast_path=True, **kwargs),
            GrpcConnection(AUTHORITY, fast_path=False, **kwargs),
        ]
    )
    peer = Peer(client=mirror, chunker=cut_stream(read_cuts))
    peer.handshake()
    cid = peer.client.start_call("/proto.API/Subscribe")
    peer.client.send_message(cid, b"req", end=True)
    peer.pump()
    sid = peer.sid(cid)
    peer.send_headers(sid)
    peer.send_messages(sid, messages, cuts=frame_cuts)
    peer.send_trailers(sid)
    peer.pump()  # the mirror compares fast path and h2 path at every step
    received = [e for e in peer.events if isinstance(e, MessageReceived)]
    assert [e.data for e in received] == messages
    ends = [e for e in peer.events if isinstance(e, CallEnded)]
    assert len(ends) == 1 and ends[0].status.code is StatusCode.OK
    # All flow-control credit is accounted for: partial frames were acked on
    # arrival and the rest rides on the messages.
    for e in received:
        peer.client.acknowledge(cid, e.flow_controlled_length)
    peer.client.release(cid)
    peer.pump()
    for conn in mirror.conns:
        manager = conn._h2._inbound_flow_control_window_manager
        assert manager.current_window_size + manager._bytes_processed == manager.max_window_size


@SLOW
@given(messages_st)
def test_connection_request_messages_reach_server_intact(messages):
    peer = Peer()
    peer.handshake()
    cid = peer.client.start_call("/proto.API/PublishAsync")
    for m in messages:
        peer.client.send_message(cid, m)
    peer.client.end_send(cid)
    peer.pump()
    assert peer.request(cid).messages == messages
    assert peer.request(cid).ended and peer.request(cid).leftover == b""


# ------------------------------------------------------------------- headers


_TIMEOUT_RE = re.compile(r"^[1-9][0-9]{0,7}[HMSmun]$")
_UNIT = {
    "H": Fraction(3600),
    "M": Fraction(60),
    "S": Fraction(1),
    "m": Fraction(1, 10**3),
    "u": Fraction(1, 10**6),
    "n": Fraction(1, 10**9),
}
_MAX_TIMEOUT = 99_999_999 * 3600


def _decode_timeout(value: str) -> Fraction:
    return int(value[:-1]) * _UNIT[value[-1]]


@FAST
@given(
    st.one_of(
        st.floats(min_value=0, max_value=_MAX_TIMEOUT, allow_nan=False),
        st.floats(min_value=0, max_value=10, allow_nan=False),
        st.integers(min_value=0, max_value=_MAX_TIMEOUT),
    )
)
# Floats whose product with the unit's multiplier rounds down to a whole number.
@example(0.1)
@example(123.456)
@example(_MAX_TIMEOUT - 1e-3)
def test_encode_timeout_fits_and_never_shortens(seconds):
    encoded = encode_timeout(seconds)
    assert _TIMEOUT_RE.match(encoded), encoded
    # Exact arithmetic: the encoded timeout is never below the requested one...
    assert _decode_timeout(encoded) >= Fraction(seconds)
    # ...and, when the finest unit was usable, at most one unit above it.
    if seconds > 0 and encoded[-1] == "n":
        assert _decode_timeout(encoded) - Fraction(seconds) < Fraction(1, 10**9)


@FAST
@given(st.floats(allow_nan=False))
def test_encode_timeout_any_float_is_eight_digits_at_most(seconds):
    encoded = encode_timeout(seconds)
    assert _TIMEOUT_RE.match(encoded), encoded
    if seconds >= _MAX_TIMEOUT:
        assert encoded == "99999999H"  # capped, infinity included
    if seconds <= 0:
        assert encoded == "1n"


def test_encode_timeout_rejects_nan():
    with pytest.raises(InvalidArgumentError):
        encode_timeout(float("nan"))


@FAST
@given(st.text())
def test_grpc_message_round_trip(text):
    encoded = encode_grpc_message(text)
    assert all(0x20 <= ord(c) <= 0x7E for c in encoded)
    assert decode_grpc_message(encoded) == text


@FAST
@given(st.text(alphabet=st.sampled_from("%0123456789abcdefABCDEFgz \u00e9\ud7ff")))
def test_grpc_message_decode_never_raises(text):
    assert isinstance(decode_grpc_message(text), str)


@FAST
@given(st.binary())
def test_grpc_message_from_raw_header_bytes_never_raises(raw):
    assert isinstance(decode_grpc_message(raw.decode("utf-8", "replace")), str)


@FAST
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=5))
def test_binary_metadata_round_trip(values):
    encoded = encode_metadata([("x-data-bin", v) for v in values])
    assert all(not value.endswith("=") for _, value in encoded)
    headers = [(k.encode(), v.encode()) for k, v in encoded]
    assert decode_metadata(headers) == tuple(("x-data-bin", v) for v in values)
    # Comma-joined repeats, padded or not, decode to the concatenation.
    joined = ",".join(v for _, v in encoded).encode()
    assert decode_metadata([(b"x-data-bin", joined)]) == (("x-data-bin", b"".join(values)),)
