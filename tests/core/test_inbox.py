"""CallInbox's batch readers: take_batch (subscriptions) and drain (message sinks).

Driven by a real GrpcConnection against the in-memory h2 server of
:mod:`.peer`: the credit they return must reach the server as WINDOW_UPDATEs,
and the end of a call must come after every message before it.
"""

from __future__ import annotations

import pytest
from hyperframe.frame import WindowUpdateFrame

from pyliftbridge import RpcError, StatusCode
from pyliftbridge._core.inbox import EMPTY, CallInbox

from .peer import Peer

PATH = "/proto.API/Subscribe"


def _streaming_call(**kwargs):
    peer = Peer(stream_window=65535, connection_window=65535, **kwargs)
    assert peer.handshake() == []
    cid = peer.client.start_call(PATH)
    peer.client.send_message(cid, b"req", end=True)
    peer.pump()
    sid = peer.sid(cid)
    peer.send_headers(sid)
    return peer, cid, sid


class _Fed(CallInbox):
    """An inbox that takes the call's events the peer has not handed it yet."""

    def __init__(self, peer: Peer, cid: int) -> None:
        super().__init__()
        self._peer, self._cid, self._seen = peer, cid, 0

    def feed(self) -> _Fed:
        events = self._peer.call_events(self._cid)
        for event in events[self._seen :]:
            self.deliver(event)
        self._seen = len(events)
        return self


def test_take_batch_takes_all_then_the_end_and_returns_all_credit_at_once() -> None:
    peer, cid, sid = _streaming_call()
    sent = [b"m%d" % i * 500 for i in range(1, 30)]
    peer.send_messages(sid, sent)
    peer.pump()
    inbox = _Fed(peer, cid).feed()
    before = len(peer.frames(WindowUpdateFrame))
    batch, flush = inbox.take_batch(peer.client, cid)
    assert batch == sent
    assert flush  # more than a quarter of the 65535 window came back at once
    peer.pump()
    assert peer.server.local_flow_control_window(sid) == 65535
    assert len(peer.frames(WindowUpdateFrame)) > before
    assert inbox.take_batch(peer.client, cid) == (EMPTY, False)
    peer.send_trailers(sid)
    peer.pump()
    inbox.feed()
    assert inbox.take_batch(peer.client, cid) == (None, False)  # the OK end, repeatably
    assert inbox.take_batch(peer.client, cid) == (None, False)


def test_take_batch_is_empty_until_something_arrives_and_raises_the_error_end() -> None:
    peer, cid, sid = _streaming_call()
    peer.pump()
    inbox = _Fed(peer, cid).feed()
    assert inbox.take_batch(peer.client, cid) == (EMPTY, False)
    peer.send_messages(sid, [b"a"])
    peer.send_trailers(sid, int(StatusCode.NOT_FOUND), b"no such stream")
    peer.pump()
    inbox.feed()
    assert inbox.take_batch(peer.client, cid) == ([b"a"], False)
    with pytest.raises(RpcError) as raised:
        inbox.take_batch(peer.client, cid)
    assert raised.value.code is StatusCode.NOT_FOUND


def test_drain_hands_out_messages_then_the_end_once() -> None:
    peer, cid, sid = _streaming_call()
    peer.send_messages(sid, [b"x" * 100] * 3)
    peer.pump()
    inbox = _Fed(peer, cid).feed()
    messages, flush, ended, error = inbox.drain(peer.client, cid)
    assert (messages, flush, ended, error) == ([b"x" * 100] * 3, False, False, None)
    assert inbox.drain(peer.client, cid) == ([], False, False, None)
    peer.send_trailers(sid, int(StatusCode.NOT_FOUND), b"gone")
    peer.pump()
    inbox.feed()
    messages, _, ended, error = inbox.drain(peer.client, cid)
    assert messages == [] and ended and isinstance(error, RpcError)
    assert error.code is StatusCode.NOT_FOUND
    assert inbox.drain(peer.client, cid)[2] is False  # the end is reported once
