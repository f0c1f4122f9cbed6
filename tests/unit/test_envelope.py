"""The NATS envelope: test vectors, the server's checks, round trips, bad input."""

from __future__ import annotations

import contextlib
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyliftbridge import (
    AckPolicy,
    EncryptionError,
    EnvelopeError,
    IncorrectOffsetError,
    InvalidArgumentError,
    MessageTooLargeError,
    ProtocolError,
    RpcError,
)
from pyliftbridge._pb import api_pb2
from pyliftbridge.envelope import (
    MAGIC,
    EnvelopeType,
    PublishedMessage,
    crc32c,
    decode_ack,
    decode_message,
    encode_message,
)

# Message{offset: -1, value: "hello", ackInbox: "ack", correlationId: "c1"}, as
# protobuf encodes it (field order 1, 3, 10, 11).
PAYLOAD = bytes.fromhex("08ffffffffffffffffff011a0568656c6c6f520361636b5a026331")


def test_crc32c_check_value_and_difference_from_zlib() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert zlib.crc32(b"123456789") == 0xCBF43926
    assert crc32c(b"") == 0
    assert crc32c(b"6789", crc32c(b"12345")) == crc32c(b"123456789")


def test_publish_envelope_test_vectors() -> None:
    plain = encode_message(b"hello", ack_inbox="ack", correlation_id="c1")
    assert plain == bytes.fromhex("b90e43b400080000") + PAYLOAD
    checked = encode_message(b"hello", ack_inbox="ack", correlation_id="c1", crc=True)
    assert checked == bytes.fromhex("b90e43b4000c01000832cec0") + PAYLOAD


def test_message_round_trip_with_every_field() -> None:
    for crc in (False, True):
        data = encode_message(
            "välue",
            key=bytearray(b"k"),
            headers={"a": b"1", "b": "zwei"},
            ack_inbox="inbox.1",
            correlation_id="corr",
            ack_policy=AckPolicy.ALL,
            expected_offset=41,
            crc=crc,
        )
        assert decode_message(data) == PublishedMessage(
            value="välue".encode(),
            key=b"k",
            headers={"a": b"1", "b": b"zwei"},
            ack_inbox="inbox.1",
            correlation_id="corr",
            ack_policy=AckPolicy.ALL,
            expected_offset=41,
        )
    bare = decode_message(encode_message(b""))
    assert bare == PublishedMessage(value=b"")
    assert bare.key is None and bare.expected_offset is None
    with pytest.raises(TypeError):
        bare.headers["x"] = b"y"  # type: ignore[index]


def test_bad_arguments_are_typed_errors() -> None:
    with pytest.raises(InvalidArgumentError, match="value"):
        encode_message(5)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="ack_policy"):
        encode_message(b"x", ack_policy=7)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="expected_offset"):
        encode_message(b"x", expected_offset=-2)
    with pytest.raises(InvalidArgumentError, match="ack_inbox"):
        encode_message(b"x", ack_inbox=b"inbox")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="header"):
        encode_message(b"x", headers={"h": 1})  # type: ignore[dict-item]


def _ack_envelope(ack: api_pb2.Ack, *, crc: bool = False) -> bytes:
    payload = ack.SerializeToString()
    if crc:
        return MAGIC + bytes((0, 12, 1, 1)) + crc32c(payload).to_bytes(4, "big") + payload
    return MAGIC + bytes((0, 8, 0, 1)) + payload


def test_ack_is_decoded_with_its_partition() -> None:
    # As the server sends it: partitionSubject holds the stream's subject,
    # msgSubject the partition's.
    wire = api_pb2.Ack(
        stream="orders",
        partitionSubject="orders.subj",
        msgSubject="orders.subj.2",
        offset=7,
        ackInbox="inbox",
        correlationId="c",
        ackPolicy=api_pb2.ALL,
        receptionTimestamp=1_700_000_000_000_000_000,
        commitTimestamp=1_700_000_000_500_000_000,
    )
    for crc in (False, True):
        ack = decode_ack(_ack_envelope(wire, crc=crc))
        assert (ack.stream, ack.partition, ack.offset) == ("orders", 2, 7)
        assert (ack.ack_inbox, ack.correlation_id, ack.ack_policy) == ("inbox", "c", AckPolicy.ALL)
        assert ack.commit_timestamp_ns == 1_700_000_000_500_000_000
    zero = api_pb2.Ack(stream="s", partitionSubject="metrics.2024", msgSubject="metrics.2024")
    assert decode_ack(_ack_envelope(zero)).partition == 0


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (api_pb2.Ack.INCORRECT_OFFSET, IncorrectOffsetError),
        (api_pb2.Ack.TOO_LARGE, MessageTooLargeError),
        (api_pb2.Ack.ENCRYPTION, EncryptionError),
    ],
)
def test_a_nack_raises_its_error(code: int, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_ack(_ack_envelope(api_pb2.Ack(stream="s", ackError=code)))  # type: ignore[arg-type]


GOOD_ACK = _ack_envelope(api_pb2.Ack(stream="s", offset=3))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "too short"),
        (MAGIC + b"\x00\x08\x00", "too short"),
        (b"\x00" * 4 + GOOD_ACK[4:], "magic"),
        (MAGIC + b"\x01" + GOOD_ACK[5:], "version"),
        (encode_message(b"x"), "expected envelope type 1"),
        (MAGIC + b"\x00\x07\x00\x01" + GOOD_ACK[8:], "header length"),
        (MAGIC + b"\x00\xff\x00\x01" + GOOD_ACK[8:], "header length"),
        (MAGIC + b"\x00\x08\x01\x01" + GOOD_ACK[8:], "CRC but its header length"),
        (MAGIC + b"\x00\x0c\x01\x01" + b"\x00\x00\x00\x00" + GOOD_ACK[8:], "CRC mismatch"),
        (MAGIC + b"\x00\x08\x00\x01" + b"\xff\xff", "not a valid ack"),
        ("text", "not str"),
    ],
)
def test_malformed_acks_are_envelope_errors(data: bytes, match: str) -> None:
    with pytest.raises(EnvelopeError, match=match) as caught:
        decode_ack(data)
    assert isinstance(caught.value, ProtocolError)


def test_message_envelope_is_not_an_ack_and_back() -> None:
    with pytest.raises(EnvelopeError, match="type 0"):
        decode_message(GOOD_ACK)
    assert GOOD_ACK[7] == EnvelopeType.ACK


@given(
    value=st.binary(max_size=300),
    key=st.none() | st.binary(min_size=1, max_size=20),
    headers=st.dictionaries(st.text(max_size=8), st.binary(max_size=8), max_size=4),
    correlation_id=st.text(max_size=10),
    expected_offset=st.none() | st.integers(min_value=0, max_value=2**63 - 1),
    crc=st.booleans(),
)
def test_any_message_round_trips(
    value: bytes,
    key: bytes | None,
    headers: dict[str, bytes],
    correlation_id: str,
    expected_offset: int | None,
    crc: bool,
) -> None:
    data = encode_message(
        value,
        key=key,
        headers=headers,
        correlation_id=correlation_id,
        expected_offset=expected_offset,
        crc=crc,
    )
    got = decode_message(data)
    assert (got.value, got.key, dict(got.headers)) == (value, key, headers)
    assert (got.correlation_id, got.expected_offset) == (correlation_id, expected_offset)


@given(st.binary(max_size=64))
def test_random_bytes_decode_or_raise_envelope_error(data: bytes) -> None:
    for decode in (decode_ack, decode_message):
        with contextlib.suppress(EnvelopeError):
            decode(data)


@given(st.binary(min_size=1, max_size=64))
def test_random_payload_behind_a_valid_header(payload: bytes) -> None:
    for kind, decode in ((1, decode_ack), (0, decode_message)):
        try:
            decode(MAGIC + bytes((0, 8, 0, kind)) + payload)
        except (EnvelopeError, IncorrectOffsetError, MessageTooLargeError, EncryptionError):
            pass
        except RpcError:  # an ack error code this version does not know
            pass
