"""Edge cases of the sans-IO gRPC client core, one test per case.

Every test drives a real ``GrpcConnection`` against an in-memory h2 server
(:mod:`.peer`) and asserts exact statuses, messages and flow-control numbers.
Most run twice: with the receive fast path and with h2 handling every frame.
"""

from __future__ import annotations

import random
import struct
import zlib

import h2.errors
import pytest
from h2.settings import SettingCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    WindowUpdateFrame,
)

from pyliftbridge import StatusCode
from pyliftbridge._core.connection import GrpcConnection
from pyliftbridge._core.events import (
    CallEnded,
    ConnectionTerminated,
    MessageReceived,
    PingAcknowledged,
    ResponseHeaders,
)
from pyliftbridge._version import __version__
from pyliftbridge.errors import (
    InvalidArgumentError,
    MessageSizeError,
    ProtocolError,
    UnavailableError,
)

from .peer import (
    AUTHORITY,
    Mirror,
    Peer,
    b64_unpadded,
    cut_stream,
    event_key,
    fixed_chunks,
    frame_message,
    parse_frames,
    whole,
)

PATH = "/proto.API/Publish"
E = h2.errors.ErrorCodes


@pytest.fixture(params=[True, False], ids=["fast", "h2path"])
def mk(request):
    """Factory for a handshaken Peer; the client runs with and without the fast path."""

    def make(**kwargs):
        if "client" not in kwargs:
            kwargs.setdefault("fast_path", request.param)
        peer = Peer(**kwargs)
        assert peer.handshake() == []
        return peer

    return make


def unary(peer: Peer, payload: bytes = b"req", **kwargs) -> int:
    cid = peer.client.start_call(PATH, **kwargs)
    peer.client.send_message(cid, payload, end=True)
    return cid


def status_of(peer: Peer, cid: int):
    return peer.ended(cid).status


# ------------------------------------------------------------ request headers


@pytest.mark.parametrize("validate", [True, False], ids=["validated", "unvalidated"])
def test_request_headers_in_grpc_order(validate):
    peer = Peer(validate_headers=validate)
    peer.handshake()
    cid = peer.client.start_call(
        PATH,
        timeout=1.5,
        metadata=[
            ("X-Trace", "abc 1"),
            ("x-blob-bin", b"\x00\xff\xfe"),
            ("x-blob-bin", b"ab"),
            ("x-one-bin", b"\x00\x01"),
        ],
    )
    peer.client.send_message(cid, b"", end=True)
    peer.pump()
    assert peer.request(cid).headers == [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", PATH.encode()),
        (b":authority", AUTHORITY.encode()),
        (b"grpc-timeout", b"1500000u"),
        (b"te", b"trailers"),
        (b"content-type", b"application/grpc"),
        (b"user-agent", f"grpc-python-pyliftbridge/{__version__}".encode()),
        (b"grpc-accept-encoding", b"identity,gzip,deflate"),
        (b"x-trace", b"abc 1"),
        (b"x-blob-bin", b"AP/+"),
        (b"x-blob-bin", b"YWI"),  # unpadded base64
        (b"x-one-bin", b"AAE"),
    ]
    assert peer.request(cid).messages == [b""]


@pytest.mark.parametrize("validate", [True, False], ids=["validated", "unvalidated"])
def test_request_headers_without_deadline_and_https(validate):
    peer = Peer(validate_headers=validate, scheme="https", user_agent="custom/1")
    peer.handshake()
    cid = peer.client.start_call("/proto.API/FetchMetadata")
    peer.client.end_send(cid)
    peer.pump()
    req = peer.request(cid)
    assert [name for name, _ in req.headers] == [
        b":method",
        b":scheme",
        b":path",
        b":authority",
        b"te",
        b"content-type",
        b"user-agent",
        b"grpc-accept-encoding",
    ]
    assert req.header(b":scheme") == b"https"
    assert req.header(b"user-agent") == b"custom/1"
    assert req.ended and req.data == b""


@pytest.mark.parametrize(
    "metadata",
    [
        [("grpc-foo", "x")],
        [("bad key", "x")],
        [("x-ok", "caf\u00e9")],
        [("x-ok", "line\nbreak")],
        [("x-ok", b"bytes-for-a-text-key")],
        [("te", "trailers")],
    ],
)
def test_invalid_metadata_rejected(metadata):
    peer = Peer()
    peer.handshake()
    with pytest.raises(InvalidArgumentError):
        peer.client.start_call(PATH, metadata=metadata)
    with pytest.raises(InvalidArgumentError):
        peer.client.start_call("no-leading-slash")
    assert peer.client.active_calls == 0


def test_grpc_timeout_encodings():
    peer = Peer()
    peer.handshake()
    expected = {
        0.0: b"1n",
        -3.0: b"1n",
        0.0625: b"62500000n",
        0.0999: b"99900001n",  # the float is 0.09990000000000000435...: rounded up
        0.1: b"100001u",  # 0.1000000000000000055...: never shortened
        2.0: b"2000000u",
        99.999999: b"100000m",  # the float is just above 99.999999: 99999999u is too short
        0.5: b"500000u",
        86399.5: b"86399500m",
        1000.0: b"1000000m",
        7 * 24 * 3600.0: b"604800S",
    }
    for timeout, header in expected.items():
        cid = peer.client.start_call(PATH, timeout=timeout)
        peer.pump()
        assert peer.request(cid).header(b"grpc-timeout") == header, timeout


# ------------------------------------------------------------------ call kinds


def test_unary_call(mk):
    peer = mk()
    cid = unary(peer, b"request")
    peer.pump()
    sid = peer.sid(cid)
    assert sid == 1
    req = peer.request(cid)
    assert req.messages == [b"request"] and req.ended
    # HEADERS, then the message with END_STREAM on its only DATA frame.
    data_frames = peer.frames(DataFrame, sid)
    assert len(data_frames) == 1 and "END_STREAM" in data_frames[0].flags
    peer.send_headers(sid, extra=[(b"x-h", b"1"), (b"x-h-bin", b"AAE="), (b"x-j-bin", b"AAE,AQI")])
    peer.send_messages(sid, [b"response"])
    peer.send_trailers(sid, extra=[(b"x-t", b"2")])
    events = peer.pump()
    assert event_key(events) == event_key(
        [
            ResponseHeaders(
                cid, (("x-h", "1"), ("x-h-bin", b"\x00\x01"), ("x-j-bin", b"\x00\x01\x01\x02"))
            ),
            MessageReceived(cid, b"response", 13),
            CallEnded(cid, _status(StatusCode.OK, "", (("x-t", "2"),))),
        ]
    )
    assert peer.client.active_calls == 0
    # The request side was already closed: nothing to reset.
    assert peer.frames(RstStreamFrame) == []


def _status(code, message="", metadata=()):
    from pyliftbridge import Status

    return Status(code, message, metadata)


def test_server_streaming_call(mk):
    peer = mk()
    cid = unary(peer, b"subscribe")
    peer.pump()
    sid = peer.sid(cid)
    peer.send_headers(sid)
    peer.pump()
    expected = [b"m%d" % i * (i % 7) for i in range(200)]
    for i in range(0, 200, 10):
        peer.send_messages(sid, expected[i : i + 10])
        peer.pump()
    assert peer.messages(cid) == expected
    assert peer.is_open(cid)
    peer.send_trailers(sid)
    peer.pump()
    assert status_of(peer, cid).code is StatusCode.OK


def test_bidi_call_interleaved(mk):
    peer = mk()
    cid = peer.client.start_call(PATH)
    peer.pump()
    sid = peer.sid(cid)
    peer.send_headers(sid)
    for i in range(20):
        peer.client.send_message(cid, b"ping-%d" % i)
        peer.pump()
        assert peer.request(cid).messages[-1] == b"ping-%d" % i
        peer.send_messages(sid, [b"pong-%d" % i])
        peer.pump()
        assert peer.messages(cid)[-1] == b"pong-%d" % i
    peer.client.end_send(cid)
    peer.pump()
    assert peer.request(cid).ended
    peer.send_trailers(sid)
    peer.pump()
    assert status_of(peer, cid).code is StatusCode.OK
    assert peer.messages(cid) == [b"pong-%d" % i for i in range(20)]


def test_many_concurrent_calls_on_one_connection(mk):
    peer = mk()
    cids = [unary(peer, b"req-%d" % i) for i in range(60)]
    peer.pump()
    assert [peer.sid(c) for c in cids] == list(range(1, 121, 2))
    for i, cid in enumerate(cids):
        assert peer.request(cid).messages == [b"req-%d" % i]
    # Answer in reverse order, interleaving frames of different calls.
    for cid in reversed(cids):
        peer.send_headers(peer.sid(cid))
    for round_ in range(3):
        for cid in reversed(cids):
            peer.send_messages(peer.sid(cid), [b"resp-%d-%d" % (cid, round_)])
        peer.pump()
    for cid in cids[::2]:
        peer.send_trailers(peer.sid(cid))
    peer.pump()
    for cid in cids[1::2]:
        peer.send_trailers(peer.sid(cid), 5, b"gone")
    peer.pump()
    for i, cid in enumerate(cids):
        assert peer.messages(cid) == [b"resp-%d-%d" % (cid, r) for r in range(3)]
        code = StatusCode.OK if i % 2 == 0 else StatusCode.NOT_FOUND
        assert status_of(peer, cid).code is code
    assert peer.client.active_calls == 0


def test_send_messages_batch(mk):
    peer = mk()
    cid = peer.client.start_call(PATH)
    peer.client.send_messages(cid, [b"a", b"", b"bc"])
    peer.client.end_send(cid)
    peer.pump()
    assert peer.request(cid).messages == [b"a", b"", b"bc"]
    assert peer.request(cid).ended
    with pytest.raises(ProtocolError):
        peer.client.send_message(cid, b"late")


# --------------------------------------------------------------- trailers-only


def test_trailers_only_response(mk):
    peer = mk()
    cid = unary(peer)
    peer.pump()
    peer.trailers_only(peer.sid(cid), 5, b"no such stream", extra=[(b"x-m", b"v")])
    events = peer.pump()
    # Trailers-Only carries no initial metadata: everything is trailing.
    assert event_key(events) == event_key(
        [CallEnded(cid, _status(StatusCode.NOT_FOUND, "no such stream", (("x-m", "v"),)))]
    )
    assert peer.frames(RstStreamFrame) == []


def test_informational_headers_are_skipped(mk):
    peer = mk()
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    peer._enqueue(sid, "headers", ([(b":status", b"100")], False))
    peer.unary_ok(sid, [b"after 100"])
    peer.pump()
    assert len(peer.response_headers(cid)) == 1
    assert peer.messages(cid) == [b"after 100"]
    assert status_of(peer, cid).code is StatusCode.OK


def test_status_details_and_binary_trailers(mk):
    peer = mk()
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    details = b"\x08\x05\x12\x07missing"  # a serialized google.rpc.Status
    peer.send_headers(sid)
    peer.send_trailers(
        sid,
        5,
        b"missing",
        [
            (b"grpc-status-details-bin", b64_unpadded(details)),
            (b"x-raw-bin", b"AAE="),  # padded is accepted too
        ],
    )
    peer.pump()
    assert status_of(peer, cid) == _status(
        StatusCode.NOT_FOUND,
        "missing",
        (("grpc-status-details-bin", details), ("x-raw-bin", b"\x00\x01")),
    )


def test_reserved_grpc_headers_are_not_custom_metadata(mk):
    # PROTOCOL-HTTP2.md reserves grpc-* names; grpcio sends grpc-accept-encoding
    # on every response. Only grpc-status-details-bin is for applications.
    peer = mk()
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    peer.send_headers(
        sid,
        extra=[
            (b"grpc-accept-encoding", b"identity,deflate,gzip"),
            (b"grpc-encoding", b"identity"),
            (b"grpc-future-thing", b"x"),
            (b"x-app", b"1"),
        ],
    )
    peer.send_trailers(
        sid,
        0,
        None,
        [
            (b"grpc-accept-encoding", b"identity"),
            (b"grpc-status-details-bin", b"CAA"),
            (b"x-app-t", b"2"),
        ],
    )
    peer.pump()
    assert peer.response_headers(cid)[0].metadata == (("x-app", "1"),)
    assert status_of(peer, cid).trailing_metadata == (
        ("grpc-status-details-bin", b"\x08\x00"),
        ("x-app-t", "2"),
    )


def test_trailers_only_ok_without_messages(mk):
    peer = mk()
    cid = unary(peer)
    peer.pump()
    peer.trailers_only(peer.sid(cid), 0)
    peer.pump()
    assert status_of(peer, cid) == _status(StatusCode.OK)
    assert peer.messages(cid) == []


# ---------------------------------------------------------------- empty messages


def test_zero_length_messages_both_ways(mk):
    peer = mk()
    cid = peer.client.start_call(PATH)
    peer.client.send_message(cid, b"")
    peer.client.send_message(cid, b"x")
    peer.client.send_message(cid, b"", end=True)
    peer.pump()
    assert peer.request(cid).messages == [b"", b"x", b""]
    assert peer.request(cid).leftover == b""
    sid = peer.sid(cid)
    peer.send_headers(sid)
    peer.send_messages(sid, [b"", b""], cuts=[5, 5])
    peer.send_messages(sid, [b"y", b""])
    peer.send_trailers(sid)
    peer.pump()
    received = [e for e in peer.call_events(cid) if isinstance(e, MessageReceived)]
    assert [e.data for e in received] == [b"", b"", b"y", b""]
    # Credit follows the DATA frames: 5 + 5 + (6 + 5), all of it accounted for.
    assert [e.flow_controlled_length for e in received] == [5, 5, 0, 11]
    assert status_of(peer, cid).code is StatusCode.OK


# ------------------------------------------------------------------ flow control


def test_client_message_larger_than_stream_window(mk):
    # The server's stream window is the default 65535 and it does not ack.
    peer = mk(auto_ack=False)
    cid = peer.client.start_call(PATH)
    payload = random.Random(1).randbytes(200_000)
    peer.client.send_message(cid, payload, end=True)
    peer.pump()
    sid = peer.sid(cid)
    req = peer.request(cid)
    assert len(req.data) == 65535
    assert not req.ended
    assert peer.client.outbound_pending(cid) == 200_005 - 65535
    assert all(len(f.data) <= 16384 for f in peer.frames(DataFrame, sid))
    peer.ack(65535, sid)  # one stream WINDOW_UPDATE of 65535
    peer.pump()
    assert len(req.data) == 131070
    assert peer.client.outbound_pending(cid) == 200_005 - 131070
    peer.auto_ack = True
    peer.ack(65535, sid)
    peer.pump()
    assert req.ended
    assert req.messages == [payload]
    assert peer.client.outbound_pending(cid) == 0
    assert "END_STREAM" in peer.frames(DataFrame, sid)[-1].flags


def test_server_message_larger_than_client_windows(mk):
    peer = mk(stream_window=65535, connection_window=65535)
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    payload = bytes(range(256)) * 4000  # 1 024 000 bytes, 15x the window
    peer.send_headers(sid)
    peer.send_messages(sid, [payload])
    peer.send_trailers(sid)
    peer.pump()  # would never go quiet (or leave the message stuck) on a deadlock
    assert peer.messages(cid) == [payload]
    assert status_of(peer, cid).code is StatusCode.OK
    # The partial bytes were acknowledged on arrival; the message carries the credit
    # of the frame that completed it only.
    received = [e for e in peer.call_events(cid) if isinstance(e, MessageReceived)]
    credit = received[0].flow_controlled_length
    assert 0 < credit <= 16384
    updates = peer.frames(WindowUpdateFrame, 0)
    assert sum(f.window_increment for f in updates) + credit >= 1_024_005 - 65535


def test_send_waits_while_window_negative_after_settings_decrease(mk):
    peer = mk(auto_ack=False)
    cid = peer.client.start_call(PATH)
    peer.client.send_message(cid, b"x" * 100_000, end=True)
    peer.pump()
    sid = peer.sid(cid)
    req = peer.request(cid)
    assert len(req.data) == 65535
    # 65535 -> 16384: the stream window becomes 0 - 49151.
    peer.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 16384})
    peer.pump()
    assert len(req.data) == 65535
    peer.window_update(20_000, sid)  # -29151: still nothing may be sent
    peer.pump()
    assert len(req.data) == 65535
    assert peer.client.outbound_pending(cid) == 100_005 - 65535
    peer.window_update(39_151, sid)  # +10000
    peer.pump()
    assert len(req.data) == 75535
    peer.window_update(1 << 20, sid)
    peer.pump()
    assert req.ended and req.messages == [b"x" * 100_000]


def test_send_resumes_when_settings_increase_window(mk):
    peer = mk(auto_ack=False)
    cid = peer.client.start_call(PATH)
    peer.client.send_message(cid, b"y" * 100_000, end=True)
    peer.pump()
    req = peer.request(cid)
    assert len(req.data) == 65535
    # No WINDOW_UPDATE: only the SETTINGS change opens the window (grpclib#43).
    peer.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 200_000})
    peer.pump()
    assert req.ended and req.messages == [b"y" * 100_000]


def test_connection_window_shared_between_calls(mk):
    # Server: huge stream windows, connection window left at 65535, no acks.
    peer = mk(
        auto_ack=False, server_window=65535, settings={SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20}
    )
    a = peer.client.start_call(PATH)
    b = peer.client.start_call(PATH)
    peer.client.send_message(a, b"a" * 50_000, end=True)
    peer.client.send_message(b, b"b" * 50_000, end=True)
    peer.pump()
    got = len(peer.request(a).data) + len(peer.request(b).data)
    assert got == 65535
    peer.window_update(100_000)  # connection-level WINDOW_UPDATE wakes both
    peer.pump()
    assert peer.request(a).messages == [b"a" * 50_000]
    assert peer.request(b).messages == [b"b" * 50_000]


def test_flow_control_acknowledged_on_consumption(mk):
    peer = mk(stream_window=65535, connection_window=65535)
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    before = len(peer.frames(WindowUpdateFrame))
    peer.send_headers(sid)
    peer.send_messages(sid, [b"m" * 10_000] * 4, cuts=[10_005] * 4)
    peer.pump()
    received = [e for e in peer.call_events(cid) if isinstance(e, MessageReceived)]
    assert [e.flow_controlled_length for e in received] == [10_005] * 4
    # Nothing consumed yet: no WINDOW_UPDATE, the server sees a shrunken window.
    assert len(peer.frames(WindowUpdateFrame)) == before
    assert peer.server.local_flow_control_window(sid) == 65535 - 40_020
    assert peer.server.outbound_flow_control_window == 65535 - 40_020
    threshold_hits = [peer.client.acknowledge(cid, e.flow_controlled_length) for e in received]
    assert threshold_hits == [False, True, True, True]  # threshold = 65535 // 4
    assert len(peer.frames(WindowUpdateFrame)) == before  # not before data_to_send
    peer.pump()
    new = peer.frames(WindowUpdateFrame)[before:]
    assert sorted((f.stream_id, f.window_increment) for f in new) == [(0, 40_020), (sid, 40_020)]
    assert peer.server.local_flow_control_window(sid) == 65535
    assert peer.server.outbound_flow_control_window == 65535
    assert peer.client.acknowledge(cid, 0) is False


def test_multi_frame_messages_hold_their_whole_credit(mk):
    # 20 000-byte messages arrive in two DATA frames each (16384 + 3621). An
    # idle reader must stop the server at the stream window, which only works
    # if the first frame of each message is held until the message is consumed.
    window = 1 << 18  # 262144: 13 messages and a bit of the 14th
    peer = mk(stream_window=window, connection_window=1 << 22)
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    peer.send_headers(sid)
    payloads = [bytes([i]) * 20_000 for i in range(40)]
    for payload in payloads:
        peer.send_messages(sid, [payload])  # frames of 16384 + 3621 bytes
    peer.send_trailers(sid)
    peer.pump()
    received = [e for e in peer.call_events(cid) if isinstance(e, MessageReceived)]
    assert len(received) == 13
    assert [e.flow_controlled_length for e in received] == [20_005] * 13
    assert peer.server.local_flow_control_window(sid) == 0
    assert peer.frames(WindowUpdateFrame, sid) == []
    # Consuming releases the window, a window's worth at a time, until all is there.
    done = 0
    for _ in range(10):
        received = [e for e in peer.call_events(cid) if isinstance(e, MessageReceived)]
        for e in received[done:]:
            peer.client.acknowledge(cid, e.flow_controlled_length)
        done = len(received)
        peer.pump()
    assert peer.messages(cid) == payloads
    assert status_of(peer, cid).code is StatusCode.OK


def test_partial_messages_cannot_fill_the_connection_window(mk):
    # Four calls each get a 40 000-byte message in interleaved 8000-byte frames.
    # Holding every partial message would fill the 65535-byte connection window
    # with no message complete: a deadlock. Partial credit is released first.
    peer = mk(stream_window=1 << 20, connection_window=65535)
    cids = [unary(peer) for _ in range(4)]
    peer.pump()
    sids = [peer.sid(c) for c in cids]
    for sid in sids:
        peer.send_headers(sid)
    peer.pump()
    data = frame_message(b"p" * 40_000)
    for start in range(0, len(data), 8000):
        for sid in sids:
            peer.send_data(sid, data[start : start + 8000])
    for sid in sids:
        peer.send_trailers(sid)
    done = 0
    for _ in range(50):
        peer.pump()
        received = [e for e in peer.events if isinstance(e, MessageReceived)]
        for e in received[done:]:
            peer.client.acknowledge(e.call_id, e.flow_controlled_length)
        done = len(received)
    for cid in cids:
        assert peer.messages(cid) == [b"p" * 40_000]
        assert status_of(peer, cid).code is StatusCode.OK


def test_message_larger_than_window_with_idle_reader_still_completes(mk):
    # A message bigger than the stream window can only complete if its partial
    # bytes are acknowledged before it is whole; nothing is consumed here.
    peer = mk(stream_window=65535, connection_window=1 << 22)
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    peer.send_headers(sid)
    peer.send_messages(sid, [b"L" * 300_000, b"after"])
    peer.send_trailers(sid)
    peer.pump()
    assert peer.messages(cid) == [b"L" * 300_000, b"after"]
    assert status_of(peer, cid).code is StatusCode.OK


def test_release_returns_credit_of_unconsumed_messages(mk):
    peer = mk(stream_window=65535, connection_window=65535)
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    peer.send_headers(sid)
    peer.send_messages(sid, [b"m" * 10_000] * 4, cuts=[10_005] * 4)
    peer.send_trailers(sid)
    peer.pump()
    assert status_of(peer, cid).code is StatusCode.OK
    assert peer.server.outbound_flow_control_window == 65535 - 40_020
    peer.client.release(cid)
    peer.pump()
    # The stream is closed, so only the connection window needs the credit.
    assert [(f.stream_id, f.window_increment) for f in peer.frames(WindowUpdateFrame)] == [
        (0, 40_020)
    ]
    assert peer.server.outbound_flow_control_window == 65535
    # A second call on the same connection gets the whole window again.
    cid2 = unary(peer)
    peer.pump()
    sid2 = peer.sid(cid2)
    peer.send_headers(sid2)
    peer.send_messages(sid2, [b"n" * 60_000])
    peer.send_trailers(sid2)
    peer.pump()
    assert peer.messages(cid2) == [b"n" * 60_000]


def test_release_of_open_call_cancels_and_returns_credit(mk):
    peer = mk(stream_window=65535, connection_window=65535)
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    peer.send_headers(sid)
    peer.send_messages(sid, [b"m" * 10_000] * 4, cuts=[10_005] * 4)
    peer.pump()
    assert peer.server.outbound_flow_control_window == 65535 - 40_020
    peer.client.release(cid)  # the application walks away from an open call
    peer.pump()
    assert peer.requests[sid].reset_code == E.CANCEL
    assert peer.server.outbound_flow_control_window == 65535
    assert peer.client.active_calls == 0
    peer.client.release(cid)  # idempotent


def test_late_data_after_cancel_is_credited(mk):
    peer = mk(stream_window=65535, connection_window=65535)
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    peer.send_headers(sid)
    peer.pump()
    peer.client.cancel(cid)
    peer.pump()
    before = len(peer.frames(WindowUpdateFrame))
    # Frames already in flight when our RST_STREAM left (16384 + 16384 + 7237 bytes).
    data = frame_message(b"z" * 40_000)
    for i in range(0, len(data), 16384):
        peer.raw_data(sid, data[i : i + 16384])
    assert peer.pump() == []
    # h2 credits the connection window for DATA on a reset stream; its window
    # manager sends the update once half the window is used up.
    new = peer.frames(WindowUpdateFrame)[before:]
    assert [(f.stream_id, f.window_increment) for f in new] == [(0, 32_768)]
    assert peer.frames(GoAwayFrame) == []


# ------------------------------------------------------------------------ GOAWAY


def test_goaway_fails_calls_above_last_stream_id_only(mk):
    peer = mk()
    cids = [unary(peer, b"r%d" % i) for i in range(4)]
    peer.pump()
    assert [peer.sid(c) for c in cids] == [1, 3, 5, 7]
    peer.send_headers(1)
    peer.pump()
    peer.goaway(3, 0, b"draining")
    events = peer.pump()
    status = _status(StatusCode.UNAVAILABLE, "server sent GOAWAY (draining)")
    assert event_key(events) == event_key(
        [
            ConnectionTerminated(0, 3, b"draining"),
            CallEnded(cids[2], status, True),
            CallEnded(cids[3], status, True),
        ]
    )
    assert peer.requests[5].reset_code == E.CANCEL
    assert peer.requests[7].reset_code == E.CANCEL
    assert not peer.client.accepting_calls
    assert peer.client.goaway_last_stream_id == 3
    with pytest.raises(UnavailableError) as info:
        peer.client.start_call(PATH)
    assert info.value.status.code is StatusCode.UNAVAILABLE
    # Calls at or below the last stream id finish normally, after the GOAWAY.
    peer.send_messages(1, [b"one"])
    peer.send_trailers(1)
    peer.send_headers(3)
    peer.send_messages(3, [b"three"])
    peer.send_trailers(3)
    peer.pump()
    assert peer.messages(cids[0]) == [b"one"]
    assert peer.messages(cids[1]) == [b"three"]
    assert status_of(peer, cids[0]).code is StatusCode.OK
    assert status_of(peer, cids[1]).code is StatusCode.OK
    assert peer.client.active_calls == 0


def test_second_goaway_with_lower_last_stream_id(mk):
    peer = mk()
    cids = [unary(peer) for _ in range(3)]
    peer.pump()
    peer.goaway(2**31 - 1)
    events = peer.pump()
    assert event_key(events) == event_key([ConnectionTerminated(0, 2**31 - 1, b"")])
    assert all(peer.is_open(c) for c in cids)
    with pytest.raises(UnavailableError):
        peer.client.start_call(PATH)
    peer.goaway(1, 0)
    events = peer.pump()
    ends = [e for e in events if isinstance(e, CallEnded)]
    assert [(e.call_id, e.status.code, e.transparent_retry) for e in ends] == [
        (cids[1], StatusCode.UNAVAILABLE, True),
        (cids[2], StatusCode.UNAVAILABLE, True),
    ]
    assert peer.client.goaway_last_stream_id == 1
    # A later GOAWAY cannot raise the limit again.
    peer.goaway(5)
    peer.pump()
    assert peer.client.goaway_last_stream_id == 1
    peer.unary_ok(1, [b"done"])
    peer.pump()
    assert peer.messages(cids[0]) == [b"done"]
    assert status_of(peer, cids[0]).code is StatusCode.OK
    for cid in cids:
        peer.ended(cid)  # exactly one CallEnded each


def test_goaway_fails_queued_calls_for_retry(mk):
    peer = mk(settings={SettingCodes.MAX_CONCURRENT_STREAMS: 1})
    first = unary(peer)
    queued = unary(peer)
    peer.pump()
    assert peer.client._calls[queued].stream_id is None
    peer.goaway(1)
    peer.pump()
    end = peer.ended(queued)
    assert end.status.code is StatusCode.UNAVAILABLE and end.transparent_retry
    peer.unary_ok(1)
    peer.pump()
    assert status_of(peer, first).code is StatusCode.OK
    assert sorted(peer.requests) == [1]  # the queued call never got a stream


def test_goaway_too_many_pings(mk):
    peer = mk()
    peer.goaway(0, E.ENHANCE_YOUR_CALM, b"too_many_pings")
    peer.pump()
    (term,) = peer.terminations()
    assert term.too_many_pings and term.error_code == 11 and term.last_stream_id == 0


# --------------------------------------------------------------------- RST_STREAM


@pytest.mark.parametrize(
    ("code", "status", "retry"),
    [
        (E.REFUSED_STREAM, StatusCode.UNAVAILABLE, True),
        (E.CANCEL, StatusCode.CANCELLED, False),
        (E.ENHANCE_YOUR_CALM, StatusCode.RESOURCE_EXHAUSTED, False),
        (E.INADEQUATE_SECURITY, StatusCode.PERMISSION_DENIED, False),
        (E.PROTOCOL_ERROR, StatusCode.INTERNAL, False),
        (E.INTERNAL_ERROR, StatusCode.INTERNAL, False),
        (E.FLOW_CONTROL_ERROR, StatusCode.INTERNAL, False),
        (E.NO_ERROR, StatusCode.INTERNAL, False),
    ],
    ids=lambda v: getattr(v, "name", str(v)),
)
@pytest.mark.parametrize("after_headers", [False, True], ids=["before-headers", "after-headers"])
def test_rst_stream_maps_to_status(mk, code, status, retry, after_headers):
    peer = mk()
    cid = unary(peer)
    other = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    if after_headers:
        peer.send_headers(sid)
        peer.send_messages(sid, [b"partial"])
    peer.reset(sid, code)
    peer.pump()
    end = peer.ended(cid)
    assert end.status == _status(status, f"stream reset by the server ({E(code).name})")
    assert end.transparent_retry is retry
    assert peer.frames(RstStreamFrame) == []  # nothing to answer a reset with
    # The other call on the connection is unaffected.
    peer.unary_ok(peer.sid(other))
    peer.pump()
    assert status_of(peer, other).code is StatusCode.OK


# --------------------------------------------------------------- HTTP status


HTTP_CASES = [
    (400, StatusCode.INTERNAL),
    (401, StatusCode.UNAUTHENTICATED),
    (403, StatusCode.PERMISSION_DENIED),
    (404, StatusCode.UNIMPLEMENTED),
    (429, StatusCode.UNAVAILABLE),
    (431, StatusCode.INTERNAL),
    (500, StatusCode.UNKNOWN),
    (502, StatusCode.UNAVAILABLE),
    (503, StatusCode.UNAVAILABLE),
    (504, StatusCode.UNAVAILABLE),
]


@pytest.mark.parametrize(("http", "code"), HTTP_CASES, ids=[str(h) for h, _ in HTTP_CASES])
@pytest.mark.parametrize("shape", ["headers-only", "with-body", "body-then-trailers"])
def test_non_200_status_mapped(mk, http, code, shape):
    peer = mk()
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    if shape == "headers-only":
        peer.send_headers(sid, status=http, content_type=b"text/plain", end=True)
    else:
        # What a proxy sends: a non-gRPC body (not length-prefixed messages).
        peer.send_headers(sid, status=http, content_type=b"text/html")
        body = b"<html><body>upstream says no</body></html>"
        if shape == "with-body":
            peer.send_data(sid, body, end=True)
        else:
            peer.send_data(sid, body)
            peer._enqueue(sid, "headers", ([(b"x-trailer", b"1")], True))
    peer.pump()
    assert status_of(peer, cid).code is code
    assert status_of(peer, cid).message == f"HTTP status {http} without gRPC status"
    assert peer.response_headers(cid) == []
    assert peer.messages(cid) == []
    assert peer.frames(GoAwayFrame) == []  # a stream matter, not a connection error


def test_non_200_ends_call_at_once_when_the_stream_stays_open(mk):
    # A proxy may send its error headers and keep the stream open (or trickle
    # a body): the call must not wait for the end of a non-gRPC response.
    peer = mk()
    cid = unary(peer)
    other = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    peer.send_headers(sid, status=502, content_type=b"text/plain", extra=[(b"x-proxy", b"p1")])
    peer.pump()
    assert status_of(peer, cid) == _status(
        StatusCode.UNAVAILABLE, "HTTP status 502 without gRPC status", (("x-proxy", "p1"),)
    )
    assert [f.error_code for f in peer.frames(RstStreamFrame, sid)] == [E.CANCEL]
    assert peer.requests[sid].reset_code == E.CANCEL
    peer.unary_ok(peer.sid(other))
    peer.pump()
    assert status_of(peer, other).code is StatusCode.OK


def test_non_200_with_grpc_status_uses_grpc_status(mk):
    peer = mk()
    cid = unary(peer)
    peer.pump()
    peer.send_headers(
        peer.sid(cid), status=503, extra=[(b"grpc-status", b"5"), (b"grpc-message", b"x")], end=True
    )
    peer.pump()
    assert status_of(peer, cid) == _status(StatusCode.NOT_FOUND, "x")


# -------------------------------------------------------------- grpc-message


MESSAGES = [
    (b"hello%20world", "hello world"),
    (b"caf%C3%A9", "caf\u00e9"),
    (b"%E2%9C%93 done", "\u2713 done"),
    (b"100%", "100%"),
    (b"%zz and %4", "%zz and %4"),
    (b"a%25b", "a%b"),
    (b"%E2%82", "\ufffd"),  # truncated UTF-8
    (b"%FF%FEx", "\ufffd\ufffdx"),  # not UTF-8 at all
    (b"caf\xc3\xa9", "caf\u00e9"),  # unencoded UTF-8 from a sloppy server
    (b"\xff", "\ufffd"),
    (b"", ""),
]


@pytest.mark.parametrize(("raw", "text"), MESSAGES)
@pytest.mark.parametrize("where", ["trailers", "trailers-only"])
def test_grpc_message_decoding_never_raises(mk, raw, text, where):
    peer = mk()
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    if where == "trailers":
        peer.send_headers(sid)
        peer.send_trailers(sid, 3, raw)
    else:
        peer.trailers_only(sid, 3, raw)
    peer.pump()
    assert status_of(peer, cid) == _status(StatusCode.INVALID_ARGUMENT, text)


# ---------------------------------------------------------- missing grpc-status


def test_trailers_without_grpc_status_are_unknown(mk):
    peer = mk()
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    peer.send_headers(sid)
    peer.send_messages(sid, [b"x"])
    peer._enqueue(sid, "headers", ([(b"x-foo", b"1")], True))
    peer.pump()
    assert status_of(peer, cid) == _status(
        StatusCode.UNKNOWN, "response ended without grpc-status", (("x-foo", "1"),)
    )
    assert peer.messages(cid) == [b"x"]


def test_200_headers_with_end_stream_but_no_grpc_status_are_unknown(mk):
    peer = mk()
    cid = unary(peer)
    peer.pump()
    peer.send_headers(peer.sid(cid), end=True)
    peer.pump()
    assert status_of(peer, cid).code is StatusCode.UNKNOWN


def test_data_with_end_stream_and_no_trailers_is_unknown(mk):
    peer = mk()
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    peer.send_headers(sid)
    peer.send_data(sid, frame_message(b"last"), end=True)
    peer.pump()
    assert peer.messages(cid) == [b"last"]
    assert status_of(peer, cid).code is StatusCode.UNKNOWN


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (b"abc", StatusCode.UNKNOWN),
        (b"99", StatusCode.UNKNOWN),
        (b"16", StatusCode.UNAUTHENTICATED),
    ],
)
def test_malformed_or_unknown_grpc_status(mk, value, code):
    peer = mk()
    cid = unary(peer)
    peer.pump()
    peer.send_headers(peer.sid(cid), extra=[(b"grpc-status", value)], end=True)
    peer.pump()
    assert status_of(peer, cid).code is code


def test_stream_ending_inside_a_message_is_internal(mk):
    peer = mk()
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    peer.send_headers(sid)
    peer.send_data(sid, frame_message(b"complete") + frame_message(b"cut short")[:7])
    peer.send_trailers(sid)
    peer.pump()
    assert peer.messages(cid) == [b"complete"]
    assert status_of(peer, cid) == _status(StatusCode.INTERNAL, "stream ended inside a message")


# ------------------------------------------------------ MAX_CONCURRENT_STREAMS


def test_101_calls_against_max_concurrent_streams_100(mk):
    peer = mk(settings={SettingCodes.MAX_CONCURRENT_STREAMS: 100})
    cids = [unary(peer, b"req-%d" % i) for i in range(101)]
    peer.pump()
    assert len(peer.requests) == 100
    last = cids[-1]
    assert peer.client._calls[last].stream_id is None
    assert peer.is_open(last)
    assert peer.client.active_calls == 101
    peer.unary_ok(peer.sid(cids[0]))
    peer.pump()
    assert status_of(peer, cids[0]).code is StatusCode.OK
    assert len(peer.requests) == 101
    req = peer.request(last)
    assert req.stream_id == 201
    assert req.messages == [b"req-100"] and req.ended
    for cid in cids[1:]:
        peer.unary_ok(peer.sid(cid), [b"resp-%d" % cid])
    peer.pump()
    for cid in cids[1:]:
        assert peer.messages(cid) == [b"resp-%d" % cid]
        assert status_of(peer, cid).code is StatusCode.OK


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "h2path"])
def test_calls_before_the_servers_settings_open_at_most_100_streams(fast_path):
    # The server's SETTINGS have not arrived: its limit is unknown, so the
    # client stays at 100 streams; the SETTINGS (a limit of 1000) free the rest.
    peer = Peer(settings={SettingCodes.MAX_CONCURRENT_STREAMS: 1000}, fast_path=fast_path)
    peer.client.initiate()
    cids = [unary(peer, b"early-%d" % i) for i in range(150)]
    early = peer.client.data_to_send()
    headers = [f for f in parse_frames(early[24:]) if isinstance(f, HeadersFrame)]
    assert len(headers) == 100
    assert peer.client._calls[cids[100]].stream_id is None
    peer._record_c2s(early)
    peer._on_server_events(peer.server.receive_data(early))
    peer.server.initiate_connection()
    peer.pump()
    assert len(peer.requests) == 150
    assert peer.request(cids[149]).messages == [b"early-149"]
    for cid in cids:
        peer.unary_ok(peer.sid(cid))
    peer.pump()
    assert all(status_of(peer, cid).code is StatusCode.OK for cid in cids)


def test_queued_calls_start_in_order_and_can_be_cancelled(mk):
    peer = mk(settings={SettingCodes.MAX_CONCURRENT_STREAMS: 2})
    cids = [unary(peer, b"q%d" % i) for i in range(5)]
    peer.pump()
    assert sorted(peer.requests) == [1, 3]
    events = peer.client.cancel(cids[3])
    assert event_key(events) == event_key(
        [CallEnded(cids[3], _status(StatusCode.CANCELLED, "call cancelled by the client"))]
    )
    peer.client.cancel(cids[0])  # a started call: frees its stream slot
    peer.pump()
    assert peer.requests[1].reset_code == E.CANCEL
    assert peer.request(cids[2]).messages == [b"q2"]
    peer.unary_ok(peer.sid(cids[1]))
    peer.pump()
    # cids[3] was cancelled while queued: it never gets a stream.
    assert peer.request(cids[4]).messages == [b"q4"]
    assert sorted(peer.requests) == [1, 3, 5, 7]


def test_settings_raising_max_concurrent_streams_starts_queued_calls(mk):
    peer = mk(settings={SettingCodes.MAX_CONCURRENT_STREAMS: 1})
    cids = [unary(peer) for _ in range(3)]
    peer.pump()
    assert sorted(peer.requests) == [1]
    peer.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: 3})
    peer.pump()
    assert sorted(peer.requests) == [1, 3, 5]
    assert all(peer.is_open(c) for c in cids)


def test_lowered_max_concurrent_streams_holds_new_calls_back(mk):
    peer = mk(settings={SettingCodes.MAX_CONCURRENT_STREAMS: 3})
    running = [unary(peer) for _ in range(3)]
    peer.pump()
    peer.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: 1})
    peer.pump()
    waiting = unary(peer)
    peer.pump()
    assert sorted(peer.requests) == [1, 3, 5]
    peer.unary_ok(1)
    peer.pump()
    peer.unary_ok(3)
    peer.pump()
    assert sorted(peer.requests) == [1, 3, 5]  # still one running: the limit
    peer.unary_ok(5)
    peer.pump()
    assert sorted(peer.requests) == [1, 3, 5, 7]
    assert peer.request(waiting).messages == [b"req"]
    for cid in running:
        assert status_of(peer, cid).code is StatusCode.OK


# ---------------------------------------------------------- message size limits


def test_oversize_length_prefix_rejected_before_body(mk):
    peer = mk(max_receive_message_size=1000)
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    peer.send_headers(sid)
    peer.send_data(sid, struct.pack(">BI", 0, 1001))  # only the prefix
    peer.pump()
    assert status_of(peer, cid) == _status(
        StatusCode.RESOURCE_EXHAUSTED,
        "gRPC message of 1001 bytes is larger than the maximum of 1000 bytes",
    )
    assert peer.requests[sid].reset_code == E.CANCEL
    assert [f.error_code for f in peer.frames(RstStreamFrame, sid)] == [E.CANCEL]


def test_message_at_the_receive_limit_is_accepted(mk):
    peer = mk(max_receive_message_size=1000)
    cid = unary(peer)
    peer.pump()
    peer.unary_ok(peer.sid(cid), [b"q" * 1000])
    peer.pump()
    assert peer.messages(cid) == [b"q" * 1000]
    assert status_of(peer, cid).code is StatusCode.OK


def test_max_send_size():
    peer = Peer(max_send_message_size=100)
    peer.handshake()
    cid = peer.client.start_call(PATH)
    peer.client.send_message(cid, b"a" * 100)
    with pytest.raises(MessageSizeError) as info:
        peer.client.send_message(cid, b"a" * 101)
    assert str(info.value) == ("message of 101 bytes is larger than the send maximum of 100 bytes")
    peer.client.send_message(cid, b"b", end=True)  # the call is still usable
    peer.pump()
    assert peer.request(cid).messages == [b"a" * 100, b"b"]


def test_commands_on_unknown_or_ended_calls():
    peer = Peer()
    peer.handshake()
    with pytest.raises(ProtocolError):
        peer.client.send_message(99, b"x")
    with pytest.raises(ProtocolError):
        peer.client.end_send(99)
    assert peer.client.cancel(99) == []
    assert peer.client.acknowledge(99, 10) is False
    peer.client.release(99)


# -------------------------------------------------------------- deadlines


def test_deadline_expiry_cancels_with_local_status(mk):
    peer = mk()
    cid = unary(peer, timeout=0.25)
    peer.pump()
    sid = peer.sid(cid)
    assert peer.request(cid).header(b"grpc-timeout") == b"250000u"
    peer.send_headers(sid)
    peer.pump()
    events = peer.client.cancel(cid, StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")
    peer.events.extend(events)
    assert event_key(events) == event_key(
        [CallEnded(cid, _status(StatusCode.DEADLINE_EXCEEDED, "deadline exceeded"))]
    )
    peer.pump()
    assert [f.error_code for f in peer.frames(RstStreamFrame, sid)] == [E.CANCEL]
    assert peer.requests[sid].reset_code == E.CANCEL
    # Whatever the server still sends for the call is dropped.
    peer.raw_data(sid, frame_message(b"late"))
    peer.raw(peer.header_block_frames(sid, [(b"grpc-status", b"0")], end=True, pieces=1))
    assert peer.pump() == []
    assert peer.client.cancel(cid, StatusCode.DEADLINE_EXCEEDED) == []
    assert peer.ended(cid).status.code is StatusCode.DEADLINE_EXCEEDED


# --------------------------------------------------------- early server closure


def test_early_server_closure_resets_with_no_error(mk):
    peer = mk(auto_ack=False)
    cid = peer.client.start_call(PATH)
    peer.client.send_message(cid, b"x" * 100_000)  # more than the window: some stays queued
    peer.pump()
    sid = peer.sid(cid)
    assert peer.client.outbound_pending(cid) > 0
    peer.send_headers(sid)
    peer.send_messages(sid, [b"bye"])
    peer.send_trailers(sid, 0)
    peer.pump()
    assert status_of(peer, cid).code is StatusCode.OK
    assert peer.messages(cid) == [b"bye"]
    assert [f.error_code for f in peer.frames(RstStreamFrame, sid)] == [E.NO_ERROR]
    assert peer.requests[sid].reset_code == E.NO_ERROR
    assert peer.client.outbound_pending(cid) == 0
    with pytest.raises(ProtocolError):
        peer.client.send_message(cid, b"more")


# --------------------------------------------------------------------- PING


def test_ping_answered_and_acknowledged(mk):
    peer = mk()
    peer.ping(b"srvping!")
    assert peer.pump() == []
    assert peer.pings_acked == [b"srvping!"]
    peer.client.ping(b"12345678")
    events = peer.pump()
    assert event_key(events) == event_key([PingAcknowledged(b"12345678")])


# ------------------------------------------------------------ connection lost


def test_connection_lost_fails_every_call(mk):
    peer = mk(settings={SettingCodes.MAX_CONCURRENT_STREAMS: 1})
    done = unary(peer)
    peer.pump()
    peer.unary_ok(peer.sid(done))
    peer.pump()
    running = unary(peer)
    queued = unary(peer)
    peer.pump()
    assert peer.client._calls[queued].stream_id is None
    events = peer.client.connection_lost("socket closed")
    lost = _status(StatusCode.UNAVAILABLE, "socket closed")
    # Only the call that never left the client is safe to send again.
    assert event_key(events) == event_key(
        [CallEnded(running, lost, False), CallEnded(queued, lost, True)]
    )
    assert status_of(peer, done).code is StatusCode.OK
    assert peer.client.connection_lost("again") == []
    assert not peer.client.accepting_calls
    with pytest.raises(UnavailableError) as info:
        peer.client.start_call(PATH)
    assert info.value.status == lost


# -------------------------------------------------------------- compression


def _compress(data: bytes, wbits: int) -> bytes:
    c = zlib.compressobj(wbits=wbits)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize(("encoding", "wbits"), [(b"gzip", 31), (b"deflate", 15)])
def test_compressed_responses_decode(mk, encoding, wbits):
    peer = mk()
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    peer.send_headers(sid, extra=[(b"grpc-encoding", encoding)])
    texts = [b"hello " * 100, b"", b"plain"]
    peer.send_data(sid, frame_message(_compress(texts[0], wbits), flag=1))
    peer.send_data(sid, frame_message(_compress(texts[1], wbits), flag=1))
    peer.send_data(sid, frame_message(texts[2], flag=0))  # flag 0 stays uncompressed
    peer.send_trailers(sid)
    peer.pump()
    assert peer.messages(cid) == texts
    assert status_of(peer, cid).code is StatusCode.OK


def test_compressed_flag_without_grpc_encoding_is_internal(mk):
    peer = mk()
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    peer.send_headers(sid)
    peer.send_data(sid, frame_message(_compress(b"x", 31), flag=1))
    peer.pump()
    assert status_of(peer, cid) == _status(
        StatusCode.INTERNAL, "compressed gRPC message without a grpc-encoding"
    )
    assert [f.error_code for f in peer.frames(RstStreamFrame, sid)] == [E.CANCEL]
    assert peer.requests[sid].reset_code == E.CANCEL


@pytest.mark.parametrize(
    ("encoding", "payload", "code", "message"),
    [
        (b"snappy", b"", StatusCode.INTERNAL, "unsupported grpc-encoding 'snappy'"),
        (b"gzip", b"not gzip at all", StatusCode.INTERNAL, None),
        (b"gzip", _compress(b"\0" * 5000, 31), StatusCode.RESOURCE_EXHAUSTED, None),
    ],
    ids=["unsupported", "corrupt", "bomb"],
)
def test_bad_compressed_responses(mk, encoding, payload, code, message):
    peer = mk(max_receive_message_size=4096)
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    peer.send_headers(sid, extra=[(b"grpc-encoding", encoding)])
    peer.pump()
    if encoding != b"snappy":
        peer.send_data(sid, frame_message(payload, flag=1))
        peer.pump()
    status = status_of(peer, cid)
    assert status.code is code
    if message is not None:
        assert status.message == message
    assert [f.error_code for f in peer.frames(RstStreamFrame, sid)] == [E.CANCEL]
    assert peer.requests[sid].reset_code == E.CANCEL


# ---------------------------------------------------------- write coalescing


def test_write_coalescing_packs_messages_into_few_frames():
    peer = Peer(settings={SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    peer.handshake()
    cid = peer.client.start_call(PATH)
    payloads = [b"%05d" % i * 20 for i in range(1000)]  # 100 bytes each
    for p in payloads:
        peer.client.send_message(cid, p)
    peer.pump()
    sid = peer.sid(cid)
    frames = peer.frames(DataFrame, sid)
    assert len(frames) == 7  # ceil(105000 / 16384)
    assert [len(f.data) for f in frames] == [16384] * 6 + [105_000 - 6 * 16384]
    assert peer.request(cid).messages == payloads
    # With a bigger frame size allowed, one DATA frame carries all of them.
    peer.update_settings({SettingCodes.MAX_FRAME_SIZE: 1 << 20})
    peer.pump()
    for p in payloads:
        peer.client.send_message(cid, p)
    peer.client.end_send(cid)
    peer.pump()
    frames = peer.frames(DataFrame, sid)[7:]
    assert len(frames) == 1 and len(frames[0].data) == 105_000
    assert "END_STREAM" in frames[0].flags
    assert peer.request(cid).messages == payloads * 2


def test_coalescing_across_calls_one_flush():
    peer = Peer()
    peer.handshake()
    cids = [peer.client.start_call(PATH) for _ in range(10)]
    for cid in cids:
        for i in range(50):
            peer.client.send_message(cid, b"m%d" % i)
    out = peer.client.data_to_send()
    peer._record_c2s(out)
    peer._on_server_events(peer.server.receive_data(out))
    # One DATA frame per call, and all ten HEADERS, in a single write.
    assert len(peer.frames(DataFrame)) == 10
    assert len(peer.frames(HeadersFrame)) == 10
    for cid in cids:
        assert peer.request(cid).messages == [b"m%d" % i for i in range(50)]


# -------------------------------------------------- receive-path robustness


def test_first_read_ends_inside_a_frame_after_settings():
    """The server's first bytes (SETTINGS, WINDOW_UPDATE, a whole response) cut
    in two reads at every possible point, including just after SETTINGS."""
    peer = Peer()
    peer.client.initiate()
    cid = unary(peer)
    peer.server.initiate_connection()
    peer.server.increment_flow_control_window(1 << 20)
    c2s = peer.client.data_to_send()
    peer._record_c2s(c2s)
    peer._on_server_events(peer.server.receive_data(c2s))
    peer.unary_ok(peer.sid(cid), [b"first", b"second"])
    peer._flush_h2()
    data = bytes(peer._out)
    for cut in range(1, len(data)):
        for fast_path in (True, False):
            client = GrpcConnection(AUTHORITY, fast_path=fast_path)
            client.initiate()
            client.send_message(client.start_call(PATH), b"req", end=True)
            client.data_to_send()
            events = client.receive_data(data[:cut]) + client.receive_data(data[cut:])
            assert [type(e).__name__ for e in events] == [
                "ResponseHeaders",
                "MessageReceived",
                "MessageReceived",
                "CallEnded",
            ], (cut, fast_path)
            assert [e.data for e in events[1:3]] == [b"first", b"second"]
            assert events[-1].status.code is StatusCode.OK


def test_protocol_error_still_reports_every_call_once(mk):
    peer = mk()
    a = unary(peer)
    b = unary(peer)
    c = unary(peer)
    peer.pump()
    peer.send_headers(1)
    peer.send_headers(3)
    peer.send_headers(5)
    peer.pump()
    peer.send_messages(1, [b"a"])
    peer.send_trailers(1)
    peer._flush_h2()
    first = bytes(peer._out)
    peer._out.clear()
    peer.send_messages(3, [b"b"])
    peer._flush_h2()
    second = bytes(peer._out)
    peer._out.clear()
    # A WINDOW_UPDATE with a zero increment is a connection error.
    bad = b"\x00\x00\x04\x08\x00\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
    peer.deliver(first + second + bad)
    for cid in (a, b, c):
        peer.ended(cid)  # exactly one CallEnded each
    # The fast path saw call a's trailers before the bad frame (h2 never
    # reports events of a read it failed on, so there a ends INTERNAL too).
    a_code = StatusCode.OK if peer.client._fast_path else StatusCode.INTERNAL
    assert status_of(peer, a).code is a_code
    assert status_of(peer, b).code is StatusCode.INTERNAL
    assert status_of(peer, c).code is StatusCode.INTERNAL
    assert not peer.client.accepting_calls
    out = peer.client.data_to_send()
    goaways = [f for f in parse_frames(out) if isinstance(f, GoAwayFrame)]
    assert len(goaways) == 1 and goaways[0].error_code == E.PROTOCOL_ERROR
    assert peer.client.receive_data(b"\x00" * 20) == []


def test_protocol_error_in_a_large_read_keeps_earlier_events():
    # Reads over 64 KiB go to h2 in pieces; a failure in a later piece must not
    # swallow what earlier pieces produced.
    peer = Peer(fast_path=False, stream_window=1 << 20, connection_window=1 << 22)
    peer.handshake()
    a = unary(peer)
    b = unary(peer)
    peer.pump()
    peer.unary_ok(1, [b"a"])
    peer.send_headers(3)
    peer.send_messages(3, [b"b" * 70_000])
    peer._flush_h2()
    data = bytes(peer._out)
    peer._out.clear()
    bad = b"\x00\x00\x04\x08\x00\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
    peer.deliver(data + bad)
    assert status_of(peer, a).code is StatusCode.OK
    assert status_of(peer, b).code is StatusCode.INTERNAL


# ------------------------------------------------ fast path versus h2's path


def _mirror(**kwargs) -> Mirror:
    return Mirror(
        [
            GrpcConnection(AUTHORITY, fast_path=True, **kwargs),
            GrpcConnection(AUTHORITY, fast_path=False, **kwargs),
        ]
    )


def _scenario_plain(peer: Peer) -> None:
    cids = [unary(peer, b"r%d" % i) for i in range(3)]
    peer.pump()
    for cid in cids:
        peer.send_headers(peer.sid(cid))
    for i in range(30):
        cid = cids[i % 3]
        peer.send_messages(peer.sid(cid), [b"x" * (i * 37 % 300), b""], cuts=[7, 100, 3])
    peer.pump()
    for cid in cids:
        peer.send_trailers(peer.sid(cid), 0, None, [(b"x-n", b"%d" % cid)])
    peer.pump()


def _scenario_padding_and_end_stream(peer: Peer) -> None:
    a = unary(peer)
    b = unary(peer)
    peer.pump()
    sa, sb = peer.sid(a), peer.sid(b)
    peer.send_headers(sa)
    peer.send_headers(sb)
    body = frame_message(b"padded message") + frame_message(b"")
    peer.send_data(sa, body[:10], pad=0)
    peer.send_data(sa, body[10:], pad=200)
    peer.send_data(sb, frame_message(b"plain"))
    peer.send_data(sb, frame_message(b"end on data"), end=True)  # no trailers
    peer.send_trailers(sa)
    peer.pump()
    c = unary(peer)
    peer.pump()
    sc = peer.sid(c)
    peer.send_headers(sc)
    peer.send_data(sc, frame_message(b"padded and ending"), end=True, pad=17)
    peer.pump()


def _scenario_continuation(peer: Peer) -> None:
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    headers = [(b":status", b"200"), (b"content-type", b"application/grpc")]
    headers += [(b"x-meta-%d" % i, b"v" * 40) for i in range(20)]
    peer.raw(peer.header_block_frames(sid, headers, end=False, pieces=4))
    peer.raw(DataFrame(sid, frame_message(b"between blocks")).serialize())
    trailers = [(b"grpc-status", b"0"), (b"x-trail", b"t" * 300)]
    peer.raw(peer.header_block_frames(sid, trailers, end=True, pieces=3))
    peer.pump()


def _scenario_big_and_small(peer: Peer) -> None:
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    peer.send_headers(sid)
    peer.send_messages(sid, [b"B" * 70_000, b"s", b"m" * 5000])  # 70 000 > the 65535 window
    peer.pump()
    for e in [e for e in peer.call_events(cid) if isinstance(e, MessageReceived)]:
        peer.client.acknowledge(cid, e.flow_controlled_length)
    peer.send_messages(sid, [b"after ack"] * 50)
    peer.send_trailers(sid)
    peer.pump()


def _scenario_reset_and_late_data(peer: Peer) -> None:
    a = unary(peer)
    b = unary(peer)
    peer.pump()
    sa, sb = peer.sid(a), peer.sid(b)
    peer.send_headers(sa)
    peer.send_headers(sb)
    peer.send_messages(sa, [b"before reset"])
    peer.pump()
    peer.client.cancel(a)
    peer.pump()
    peer.raw_data(sa, frame_message(b"late " * 100))
    peer.send_messages(sb, [b"still fine"])
    peer.send_trailers(sb)
    peer.pump()


def _scenario_data_before_headers(peer: Peer) -> None:
    cid = unary(peer)
    peer.pump()
    peer.raw_data(peer.sid(cid), frame_message(b"no headers yet"))
    peer.pump()


def _scenario_data_inside_header_block(peer: Peer) -> None:
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    peer.send_headers(sid)
    peer.pump()
    block = peer.header_block_frames(sid, [(b"grpc-status", b"0")] * 30, end=True, pieces=2)
    first_len = 9 + int.from_bytes(block[:3], "big")
    peer.raw(block[:first_len])
    peer.raw(DataFrame(sid, frame_message(b"illegal")).serialize())
    peer.raw(block[first_len:])
    peer.pump()


def _scenario_flow_control_violation(peer: Peer) -> None:
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    peer.send_headers(sid)
    peer.pump()
    # The client's stream window is 1000 (see the mirror's settings below).
    peer.raw_data(sid, b"\0" * 1001)
    peer.pump()


def _scenario_goaway_and_settings(peer: Peer) -> None:
    cids = [unary(peer) for _ in range(3)]
    peer.pump()
    for cid in cids:
        peer.send_headers(peer.sid(cid))
        peer.send_messages(peer.sid(cid), [b"hi"])
    peer.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 30_000})
    peer.ping(b"pingpong")
    peer.goaway(3)
    for cid in cids[:2]:
        peer.send_messages(peer.sid(cid), [b"after goaway"])
        peer.send_trailers(peer.sid(cid))
    peer.pump()


def _scenario_control_frames(peer: Peer) -> None:
    # Pings (both ways) and window updates on and between the DATA frames of
    # two calls, one of them held back by its window: handled outside h2 on
    # the fast path, they must leave the same events, windows and output.
    first = peer.client.start_call(PATH)
    second = unary(peer)
    peer.client.send_message(first, b"x" * 70_000)  # more than the 65535 stream window
    peer.pump()
    for cid in (first, second):
        peer.send_headers(peer.sid(cid))
    peer.pump()
    for i in range(5):
        peer.ping(b"ping-%03d" % i)
        peer.send_messages(peer.sid(second), [b"m%d" % i] * 3)
        peer.raw_window_update(0, 1000 + i)
        peer.raw_window_update(peer.sid(first), 2000 + i)
        peer.client.ping(b"cli-%04d" % i)
    peer.raw(PingFrame(0, b"12345678", flags=["ACK"]).serialize())  # an unsolicited ACK
    peer.send_trailers(peer.sid(second))
    peer.pump()
    peer.raw_window_update(peer.sid(second), 10)  # a closed stream
    peer.pump()


def _scenario_window_overflow(peer: Peer) -> None:
    cid = unary(peer)
    peer.pump()
    peer.send_headers(peer.sid(cid))
    peer.pump()
    peer.raw_window_update(peer.sid(cid), 2**31 - 1)  # a stream error (RST FLOW_CONTROL)
    peer.pump()
    peer.raw_window_update(0, 2**31 - 1)  # a connection error
    peer.pump()


def _scenario_bad_control_frames(peer: Peer) -> None:
    cid = unary(peer)
    peer.pump()
    peer.send_headers(peer.sid(cid))
    peer.pump()
    # A PING that is not 8 bytes long: FRAME_SIZE_ERROR from h2 on both paths.
    peer.raw(b"\x00\x00\x07\x06\x00\x00\x00\x00\x00" + b"1234567")
    peer.pump()


SCENARIOS = {
    "plain": (_scenario_plain, {}),
    "control-frames": (_scenario_control_frames, {}),
    "window-overflow": (_scenario_window_overflow, {}),
    "bad-control-frames": (_scenario_bad_control_frames, {}),
    "padding-end-stream": (_scenario_padding_and_end_stream, {}),
    "continuation": (_scenario_continuation, {}),
    "big-and-small": (
        _scenario_big_and_small,
        {"stream_window": 65535, "connection_window": 65535},
    ),
    "reset-late-data": (_scenario_reset_and_late_data, {}),
    "data-before-headers": (_scenario_data_before_headers, {}),
    "data-inside-header-block": (_scenario_data_inside_header_block, {}),
    "flow-control-violation": (_scenario_flow_control_violation, {"stream_window": 1000}),
    "goaway-settings-ping": (_scenario_goaway_and_settings, {}),
}

CHUNKINGS = {
    "whole": lambda: whole,
    "bytewise": lambda: fixed_chunks(1),
    "7": lambda: fixed_chunks(7),
    "frame-ish": lambda: fixed_chunks(16393),
    "random": lambda: cut_stream([random.Random(7).randint(1, 3000) for _ in range(97)]),
}


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_fast_path_matches_h2_path(scenario, chunking):
    run, client_kwargs = SCENARIOS[scenario]
    mirror = _mirror(**client_kwargs)
    peer = Peer(client=mirror, chunker=CHUNKINGS[chunking]())
    peer.handshake()
    run(peer)  # Mirror asserts identical events and identical output bytes
    # And the calls' stories are complete: at most one CallEnded per call.
    for call_id in {getattr(e, "call_id", None) for e in peer.events} - {None}:
        ends = [e for e in peer.call_events(call_id) if isinstance(e, CallEnded)]
        assert len(ends) <= 1
    if scenario == "big-and-small":
        # Flow-control output was part of the comparison: stream and connection
        # WINDOW_UPDATEs (for partial messages and for acknowledged ones) went out.
        updates = peer.frames(WindowUpdateFrame)
        assert {f.stream_id for f in updates} >= {0, 1}
    if scenario in ("data-before-headers", "flow-control-violation"):
        (goaway,) = peer.frames(GoAwayFrame)  # exactly one, on either path
        expected = E.PROTOCOL_ERROR if scenario == "data-before-headers" else E.FLOW_CONTROL_ERROR
        assert goaway.error_code == expected
        assert all(
            e.status.code is StatusCode.INTERNAL for e in peer.events if isinstance(e, CallEnded)
        )


def test_fast_path_actually_used():
    """The mirror test means little if the fast path never runs: count h2 calls."""
    conn = GrpcConnection(AUTHORITY, fast_path=True)
    peer = Peer(client=conn)
    peer.handshake()
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    peer.send_headers(sid)
    peer.pump()
    calls = []
    original = conn._h2.receive_data

    def spy(data):
        calls.append(bytes(data))
        return original(data)

    conn._h2.receive_data = spy
    peer.send_messages(sid, [b"m"] * 50, cuts=[6] * 50)
    peer.pump()
    assert peer.messages(cid) == [b"m"] * 50
    assert calls == []  # 50 plain DATA frames, none through h2
    # grpc-go's companions of its answers: a WINDOW_UPDATE and a PING each.
    window = conn._h2.outbound_flow_control_window
    for i in range(10):
        peer.raw_window_update(0, 100)
        peer.raw_window_update(sid, 100)
        peer.ping(b"bdp-%04d" % i)
        peer.send_messages(sid, [b"n"])
    peer.pump()
    assert calls == []
    assert peer.pings_acked[-10:] == [b"bdp-%04d" % i for i in range(10)]
    assert conn._h2.outbound_flow_control_window == window + 1000


def test_continuation_frames_reach_client_intact():
    peer = Peer()
    peer.handshake()
    cid = unary(peer)
    peer.pump()
    sid = peer.sid(cid)
    headers = [(b":status", b"200"), (b"content-type", b"application/grpc"), (b"x-a", b"1" * 50)]
    block = peer.header_block_frames(sid, headers, end=False, pieces=5)
    assert block.count(bytes([ContinuationFrame.type])) >= 1
    peer.raw(block)
    peer.raw(DataFrame(sid, frame_message(b"m")).serialize())
    peer.pump()
    assert peer.response_headers(cid)[0].metadata == (("x-a", "1" * 50),)
    assert peer.messages(cid) == [b"m"]
