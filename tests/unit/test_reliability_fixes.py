"""Small fixes of the reliability work: cursor requests, and errors a hostile server must not disguise."""

from __future__ import annotations

import pytest

from pyliftbridge._pb import api_pb2
from pyliftbridge._requests import cursor_request, map_rpc_error, map_subscribe_error
from pyliftbridge._status import Status, StatusCode
from pyliftbridge.errors import (
    InvalidArgumentError,
    MessageSizeError,
    ProtocolError,
    RpcError,
    StopPositionReachedError,
)


def test_cursor_request_offsets() -> None:
    fetch = cursor_request("c", "s", 2)
    assert isinstance(fetch, api_pb2.FetchCursorRequest) and fetch.partition == 2
    for offset in (-1, 0, 2**63 - 1):
        request = cursor_request("c", "s", 0, offset)
        assert isinstance(request, api_pb2.SetCursorRequest) and request.offset == offset


@pytest.mark.parametrize(
    ("cursor_id", "stream", "partition", "offset"),
    [
        ("c", "s", 0, -2),
        ("c", "s", 0, -5),
        ("c", "s", 0, 2**63),
        ("c", "s", 0, True),
        ("c", "s", 0, 1.0),
        ("c", "s", -1, 0),
        ("c", "s", 2**31, 0),
        ("", "s", 0, 0),
        ("c", "", 0, 0),
        (None, "s", 0, 0),
    ],
)
def test_cursor_request_refusals(
    cursor_id: object, stream: object, partition: object, offset: object
) -> None:
    with pytest.raises(InvalidArgumentError):
        cursor_request(cursor_id, stream, partition, offset)  # type: ignore[arg-type]


def test_a_server_reset_is_no_stop_position() -> None:
    # RST_STREAM ENHANCE_YOUR_CALM maps to RESOURCE_EXHAUSTED, like "Stop offset reached".
    reset = RpcError(
        status=Status(
            StatusCode.RESOURCE_EXHAUSTED, "stream reset by the server (ENHANCE_YOUR_CALM)"
        )
    )
    assert map_subscribe_error(reset, handshake=False) is reset
    stop = RpcError(status=Status(StatusCode.RESOURCE_EXHAUSTED, "Stop offset reached"))
    assert isinstance(map_subscribe_error(stop, handshake=False), StopPositionReachedError)


@pytest.mark.parametrize("handshake", [True, False])
def test_the_clients_own_verdicts_keep_their_class(handshake: bool) -> None:
    # A message over the limit ends the call RESOURCE_EXHAUSTED, bad bytes INTERNAL:
    # neither may be read as the server's word (a stop position, a not-leader...).
    for error in (
        MessageSizeError("too big", status=Status(StatusCode.RESOURCE_EXHAUSTED, "too big")),
        ProtocolError("bad", status=Status(StatusCode.FAILED_PRECONDITION, "bad")),
    ):
        assert map_subscribe_error(error, handshake=handshake) is error
        assert map_rpc_error("FetchPartitionMetadata", error) is error
