"""Liftbridge's NATS envelope: publish to a stream through NATS, read acks from NATS.

A Liftbridge server stores every NATS message that arrives on a stream's
subject. A message in the *publish envelope* format carries a key, headers,
an ack inbox, a correlation id, an ack policy and an expected offset; the
server then sends an *ack envelope* to that inbox once the message is stored.
Anything else is stored as a plain value. This is how applications that
already speak NATS (any NATS client) publish to Liftbridge without gRPC, as
go-liftbridge's ``NewMessage`` and ``UnmarshalAck`` allow.

Layout (``documentation/envelope_protocol.md`` of the server)::

    bytes 0-3   magic B9 0E 43 B4
    byte  4     version 0
    byte  5     header length: 8, or 12 with a CRC
    byte  6     flags: bit 0 = a CRC-32C of the payload follows
    byte  7     type: 0 publish (payload proto.Message), 1 ack (payload proto.Ack)
    bytes 8-11  CRC-32C (Castagnoli) of the payload, big-endian, when flagged
    payload     the protobuf message

Example, with any NATS client::

    from pyliftbridge import envelope

    nats.subscribe("my.acks", ...)
    nats.publish("orders", envelope.encode_message(b"hello", ack_inbox="my.acks"))
    ack = envelope.decode_ack(data_received_on_my_acks)

These are pure functions over bytes: no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ._decode import parse
from ._pb import api_pb2
from ._requests import (
    BytesLike,
    Headers,
    ack_error,
    envelope_message,
    partition_of_ack,
)
from .errors import EnvelopeError
from .models import Ack, AckPolicy

__all__ = [
    "MAGIC",
    "EnvelopeType",
    "PublishedMessage",
    "crc32c",
    "decode_ack",
    "decode_message",
    "encode_message",
]

MAGIC = b"\xb9\x0e\x43\xb4"
"""The four bytes every envelope starts with (not valid UTF-8 on purpose)."""

_VERSION = 0
_HEADER_LEN = 8
_HEADER_LEN_WITH_CRC = 12
_FLAG_CRC = 0x01


class EnvelopeType(enum.IntEnum):
    """The envelope types a client sends or receives (the server uses more internally)."""

    PUBLISH = 0
    """A message to store: payload ``proto.Message``."""
    ACK = 1
    """The server's ack of a stored message: payload ``proto.Ack``."""


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC-32C (Castagnoli) of ``data``, continuing from ``value``.

    This is the envelope checksum; it differs from the CRC-32/IEEE that
    ``zlib.crc32`` computes and that the key partitioner uses.
    """
    table = _CRC32C_TABLE
    crc = value ^ 0xFFFFFFFF
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _wrap(payload: bytes, kind: EnvelopeType, crc: bool) -> bytes:
    if crc:
        header = MAGIC + bytes((_VERSION, _HEADER_LEN_WITH_CRC, _FLAG_CRC, kind))
        return header + crc32c(payload).to_bytes(4, "big") + payload
    return MAGIC + bytes((_VERSION, _HEADER_LEN, 0, kind)) + payload


def _unwrap(data: bytes | bytearray | memoryview, kind: EnvelopeType) -> bytes:
    """The payload of an envelope of type ``kind``, checked as the server checks it."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise EnvelopeError(f"an envelope is bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) < _HEADER_LEN:
        raise EnvelopeError(f"{len(data)} bytes are too short for an envelope header")
    if data[:4] != MAGIC:
        raise EnvelopeError("not a Liftbridge envelope (wrong magic number)")
    if data[4] != _VERSION:
        raise EnvelopeError(f"unknown envelope version {data[4]}")
    header_len, flags, actual = data[5], data[6], data[7]
    if actual != kind:
        raise EnvelopeError(f"expected envelope type {kind} ({kind.name}), got type {actual}")
    if not _HEADER_LEN <= header_len <= len(data):
        raise EnvelopeError(f"bad envelope header length {header_len} for {len(data)} bytes")
    payload = data[header_len:]
    if flags & _FLAG_CRC:
        if header_len != _HEADER_LEN_WITH_CRC:
            raise EnvelopeError(
                f"envelope flags a CRC but its header length is {header_len}, not 12"
            )
        expected = int.from_bytes(data[_HEADER_LEN:_HEADER_LEN_WITH_CRC], "big")
        actual_crc = crc32c(payload)
        if actual_crc != expected:
            raise EnvelopeError(
                f"envelope CRC mismatch: header says {expected:#010x}, payload has "
                f"{actual_crc:#010x}"
            )
    return payload


def encode_message(
    value: BytesLike,
    *,
    key: BytesLike | None = None,
    headers: Headers | None = None,
    ack_inbox: str = "",
    correlation_id: str = "",
    ack_policy: AckPolicy = AckPolicy.LEADER,
    expected_offset: int | None = None,
    crc: bool = False,
) -> bytes:
    """A publish envelope to send, with any NATS client, to a stream's subject.

    Partition N > 0 of a stream listens on ``<stream subject>.N``. The server
    sends the ack to ``ack_inbox`` (none when it is empty or ``ack_policy`` is
    ``AckPolicy.NONE``); read it with :func:`decode_ack`. ``expected_offset``
    applies to streams with optimistic concurrency control (None: no
    expectation). ``crc`` adds a CRC-32C the server verifies. Unlike the
    Publish RPCs, a message sent this way does not resume a paused partition.

    Raises:
        InvalidArgumentError: an argument has the wrong type or range.
    """
    message = envelope_message(
        value,
        key=key,
        headers=headers,
        ack_inbox=ack_inbox,
        correlation_id=correlation_id,
        ack_policy=ack_policy,
        expected_offset=expected_offset,
    )
    return _wrap(message.SerializeToString(), EnvelopeType.PUBLISH, crc)


def _empty_mapping() -> Mapping[str, bytes]:
    return MappingProxyType({})


@dataclass(frozen=True)
class PublishedMessage:
    """The content of a publish envelope, as :func:`decode_message` reads it."""

    value: bytes
    """The payload."""
    key: bytes | None = None
    """The key, or None when there is none."""
    headers: Mapping[str, bytes] = field(default_factory=_empty_mapping, hash=False)
    """Read-only headers."""
    ack_inbox: str = ""
    """Where the server sends the ack (empty: nowhere)."""
    correlation_id: str = ""
    """The publisher's correlation id."""
    ack_policy: AckPolicy = AckPolicy.LEADER
    """When the server acks."""
    expected_offset: int | None = None
    """The offset the message must land at, None for no expectation."""


def decode_message(data: bytes | bytearray | memoryview) -> PublishedMessage:
    """Read a publish envelope (for example one seen by a NATS subscriber).

    Raises:
        EnvelopeError: ``data`` is not a well-formed publish envelope.
    """
    payload = _unwrap(data, EnvelopeType.PUBLISH)
    pb = parse(
        api_pb2.Message,
        payload,
        error=EnvelopeError,
        what="the message envelope's payload",
        kind="message",
    )
    return PublishedMessage(
        value=pb.value,
        key=pb.key or None,
        headers=MappingProxyType(dict(pb.headers)),
        ack_inbox=pb.ackInbox,
        correlation_id=pb.correlationId,
        ack_policy=AckPolicy(pb.ackPolicy),
        expected_offset=None if pb.offset == -1 else pb.offset,
    )


def decode_ack(data: bytes | bytearray | memoryview) -> Ack:
    """Read an ack envelope that the server sent to a message's ack inbox.

    Raises:
        EnvelopeError: ``data`` is not a well-formed ack envelope.
        IncorrectOffsetError: the message's expected offset did not match.
        MessageTooLargeError: the message was too large to replicate.
        EncryptionError: the server could not encrypt the message.
        RpcError: another failure the ack reports.
    """
    return _ack_from_pb(_parse_ack(data))


def _parse_ack(data: bytes | bytearray | memoryview) -> api_pb2.Ack:
    """The ``proto.Ack`` inside an ack envelope, its error not yet looked at
    (a publisher routes a failed ack by its correlation id).

    Raises:
        EnvelopeError: ``data`` is not a well-formed ack envelope.
    """
    payload = _unwrap(data, EnvelopeType.ACK)
    return parse(
        api_pb2.Ack, payload, error=EnvelopeError, what="the ack envelope's payload", kind="ack"
    )


def _ack_from_pb(pb: api_pb2.Ack) -> Ack:
    """The typed result of a parsed ack: the :class:`Ack`, or its error raised."""
    failure = ack_error(pb)
    if failure is not None:
        raise failure
    return Ack.from_proto(pb, partition_of_ack(pb.partitionSubject, pb.msgSubject))
