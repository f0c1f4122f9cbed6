"""The publish hot path's codec: hand-written wire code against protobuf, both ways.

Both implementations run on every interpreter, whichever one the import
chose, so CPython checks the PyPy path and the other way round.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyliftbridge import (
    AckPolicy,
    IncorrectOffsetError,
    InvalidArgumentError,
    NoSuchPartitionError,
    ProtocolError,
)
from pyliftbridge._codec import (
    _encode_protobuf,
    _encode_wire,
    _read_message_protobuf,
    _read_message_python,
    _read_message_wire,
    _read_protobuf,
    _read_python,
    _read_wire,
    encode_publish_request,
    read_message,
    read_publish_response,
)
from pyliftbridge._pb import api_pb2
from pyliftbridge.models import Ack, Message

INT64 = st.integers(-(2**63), 2**63 - 1)
TEXT = st.text(max_size=40)

requests = st.fixed_dictionaries(
    {
        "stream": st.text(min_size=1, max_size=30),
        "value": st.binary(max_size=300),
        "key": st.binary(max_size=20),
        "headers": st.dictionaries(TEXT, st.binary(max_size=20), max_size=3),
        "partition": st.integers(0, 2**31 - 1),
        "correlation_id": TEXT,
        "ack_policy": st.sampled_from([0, 1, 2]),
        "expected_offset": st.integers(-1, 2**63 - 1),
    }
)


@settings(max_examples=300)
@given(requests)
def test_hand_encoder_writes_what_protobuf_reads_back(fields: dict) -> None:
    wire = _encode_wire(**fields)
    parsed = api_pb2.PublishRequest.FromString(wire)
    assert parsed.stream == fields["stream"]
    assert parsed.value == fields["value"]
    assert parsed.key == fields["key"]
    assert dict(parsed.headers) == fields["headers"]
    assert parsed.partition == fields["partition"]
    assert parsed.correlationId == fields["correlation_id"]
    assert parsed.ackPolicy == fields["ack_policy"]
    assert parsed.expectedOffset == fields["expected_offset"]
    # Both encoders agree field for field (byte order of map entries may differ).
    assert api_pb2.PublishRequest.FromString(_encode_protobuf(**fields)) == parsed


@given(requests.filter(lambda f: len(f["headers"]) <= 1))
def test_hand_encoder_is_byte_identical_to_protobuf(fields: dict) -> None:
    assert _encode_wire(**fields) == _encode_protobuf(**fields)


acks = st.fixed_dictionaries(
    {
        "stream": TEXT,
        "partitionSubject": TEXT,
        "msgSubject": TEXT,
        "offset": INT64,
        "ackInbox": TEXT,
        "correlationId": TEXT,
        "ackPolicy": st.sampled_from([0, 1, 2]),
        "receptionTimestamp": INT64,
        "commitTimestamp": INT64,
    }
)


@settings(max_examples=300)
@given(acks, TEXT)
def test_hand_decoder_reads_plain_acks_as_protobuf_does(ack: dict, response_cid: str) -> None:
    data = api_pb2.PublishResponse(
        ack=api_pb2.Ack(**ack), correlationId=response_cid
    ).SerializeToString()
    fast = _read_wire(data)
    assert fast is not None
    cid, offset, source, error = fast
    assert (cid, offset, error) == (*_read_protobuf(data)[:2], None)
    assert cid == (ack["correlationId"] or response_cid)
    # The Ack parses the rest from the bytes when asked.
    lazy = Ack(source, 3, offset, cid)
    eager = Ack.from_proto(api_pb2.Ack(**ack), 3)
    assert (lazy.stream, lazy.commit_timestamp_ns, lazy.message_subject) == (
        eager.stream,
        eager.commit_timestamp_ns,
        eager.message_subject,
    )


def test_errors_and_unknown_fields_go_to_protobuf() -> None:
    nack = api_pb2.PublishResponse(
        ack=api_pb2.Ack(correlationId="c", ackError=api_pb2.Ack.INCORRECT_OFFSET)
    ).SerializeToString()
    async_error = api_pb2.PublishResponse(
        correlationId="d",
        asyncError=api_pb2.PublishAsyncError(code=api_pb2.PublishAsyncError.NOT_FOUND),
    ).SerializeToString()
    assert _read_wire(nack) is None
    assert _read_wire(async_error) is None
    for read in (_read_python, _read_protobuf, read_publish_response):
        assert read(nack)[0] == "c"
        assert isinstance(read(nack)[3], IncorrectOffsetError)
        assert read(async_error)[0] == "d"
        assert isinstance(read(async_error)[3], NoSuchPartitionError)


@given(st.binary(max_size=200))
def test_hand_decoder_never_raises_on_garbage(data: bytes) -> None:
    # Either a reading protobuf agrees with, or "ask protobuf".
    fast = _read_wire(data)
    if fast is not None:
        assert fast[:2] == _read_protobuf(data)[:2]


def test_encode_publish_request_checks_arguments() -> None:
    common = dict(key=None, headers=None, ack_policy=AckPolicy.LEADER, expected_offset=None)
    with pytest.raises(InvalidArgumentError, match="stream"):
        encode_publish_request("", b"v", partition=0, correlation_id="c", **common)
    with pytest.raises(InvalidArgumentError, match="partition"):
        encode_publish_request("s", b"v", partition=-1, correlation_id="c", **common)
    with pytest.raises(InvalidArgumentError, match="partition"):
        encode_publish_request("s", b"v", partition=True, correlation_id="c", **common)
    with pytest.raises(InvalidArgumentError, match="ack_policy"):
        encode_publish_request(
            "s",
            b"v",
            key=None,
            headers=None,
            partition=0,
            ack_policy=7,
            expected_offset=None,
            correlation_id="c",
        )
    with pytest.raises(InvalidArgumentError, match="header"):
        encode_publish_request(
            "s",
            b"v",
            key=None,
            headers={"h": 5},
            partition=0,
            ack_policy=0,
            expected_offset=None,
            correlation_id="c",
        )
    wire = encode_publish_request("s", b"v", partition=2, correlation_id="c", **common)
    parsed = api_pb2.PublishRequest.FromString(wire)
    assert (parsed.stream, parsed.partition, parsed.expectedOffset) == ("s", 2, -1)


messages = st.fixed_dictionaries(
    {
        "offset": INT64,
        "key": st.binary(max_size=20),
        "value": st.binary(max_size=300),
        "timestamp": INT64,
        "stream": TEXT,
        "partition": st.integers(-(2**31), 2**31 - 1),
        "subject": TEXT,
        "replySubject": TEXT,
        "headers": st.dictionaries(TEXT, st.binary(max_size=20), max_size=4),
        "ackInbox": TEXT,
        "correlationId": TEXT,
        "ackPolicy": st.sampled_from([0, 1, 2]),
    }
)


def _fields(message: Message) -> dict:
    return {
        f.name: getattr(message, f.name) for f in dataclasses.fields(Message) if f.name != "headers"
    } | {"headers": dict(message.headers)}


@settings(max_examples=300)
@given(messages)
def test_hand_message_decoder_reads_what_protobuf_reads(fields: dict) -> None:
    data = api_pb2.Message(**fields).SerializeToString()
    fast = _read_message_wire(data)
    assert fast is not None
    assert _fields(fast) == _fields(_read_message_protobuf(data))
    assert _fields(read_message(data)) == _fields(fast)


@given(st.binary(max_size=200))
def test_hand_message_decoder_agrees_or_defers_on_garbage(data: bytes) -> None:
    fast = _read_message_wire(data)
    if fast is None:
        return
    try:
        slow = _read_message_protobuf(data)
    except ProtocolError:
        # protobuf refuses what the fast reader accepted only for fields it
        # skips the same way; nothing of the kind may pass silently here.
        raise AssertionError(f"fast reader accepted bytes protobuf refuses: {data!r}") from None
    assert _fields(fast) == _fields(slow)


def test_malformed_messages_raise_protocol_error_on_every_path() -> None:
    for bad in (b"\x1a\x05ab", b"\x4a\x03\x0a\x05x", b"\xff\xff\xff"):
        assert _read_message_wire(bad) is None
        with pytest.raises(ProtocolError):
            _read_message_python(bad)
        with pytest.raises(ProtocolError):
            read_message(bad)
