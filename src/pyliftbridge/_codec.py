"""The hot path's three messages: PublishRequest out, PublishResponse and Message in.

Every pipelined publish encodes one ``PublishRequest`` and decodes one
``PublishResponse``; every message a subscription yields is one ``Message``.
How fast that is depends on the protobuf runtime:

- ``upb`` (CPython's protobuf wheels) does both in C: building the message
  and ``SerializeToString`` (~1.2 µs) beat any Python encoder (~2 µs), and
  ``FromString`` (~0.9 µs) beats walking the bytes in Python (~4 µs).
- the pure-Python runtime (PyPy, or ``PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION
  =python``) spends ~4.7 µs encoding and ~4.3 µs decoding a publish, and
  ~12 µs making a received ``Message``, where the hand-written wire code
  below takes ~0.8, ~0.7 and ~0.8 µs under PyPy's JIT.

So both are here, chosen once at import by the runtime protobuf has; they
produce and accept the same bytes (``tests/unit/test_codec.py``
checks the hand-written pair against protobuf on every interpreter). The
decoder only reads what resolving a publish needs (correlation id, offset,
error fields); :class:`~pyliftbridge.models.Ack` parses the rest on demand.
Anything unusual (an error, an unknown field) goes to protobuf's own parser.
"""

from __future__ import annotations

from typing import Union

from google.protobuf.internal import api_implementation

from ._decode import parse
from ._pb import api_pb2
from ._requests import (
    _INT32_MAX,
    Headers,
    _ack_policy,
    _expected_offset,
    _headers,
    _int,
    _name,
    correlation_id_of,
    publish_response_error,
)
from .errors import LiftbridgeError
from .models import Message

__all__ = ["AckSource", "encode_publish_request", "read_message", "read_publish_response"]

#: Where an :class:`~pyliftbridge.models.Ack` reads its fields from: the
#: parsed wire ack, or the serialized PublishResponse that holds it.
AckSource = Union[api_pb2.Ack, bytes]

#: One decoded answer: ``(correlation_id, offset, ack_source, error)``; with
#: an error the other fields other than the id are meaningless.
Answer = tuple[str, int, AckSource, Union[LiftbridgeError, None]]

_UINT64 = (1 << 64) - 1


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(tag: int, data: bytes) -> bytes:
    return bytes((tag,)) + _varint(len(data)) + data


def _encode_wire(
    stream: str,
    value: bytes,
    key: bytes,
    headers: dict[str, bytes],
    partition: int,
    correlation_id: str,
    ack_policy: int,
    expected_offset: int,
) -> bytes:
    # Fields in field-number order and proto3 defaults left out, as protobuf
    # writes them; map entries as protobuf writes them too (key 1, value 2).
    parts: list[bytes] = []
    if key:
        parts += (b"\x0a", _varint(len(key)), key)
    if value:
        parts += (b"\x12", _varint(len(value)), value)
    name = stream.encode()
    parts += (b"\x1a", _varint(len(name)), name)
    if partition:
        parts += (b"\x20", _varint(partition))
    for header, data in headers.items():
        entry = _length_delimited(0x0A, header.encode()) + _length_delimited(0x12, data)
        parts.append(_length_delimited(0x2A, entry))
    if correlation_id:
        cid = correlation_id.encode()
        parts += (b"\x3a", _varint(len(cid)), cid)
    if ack_policy:
        parts += (b"\x40", _varint(ack_policy))
    if expected_offset:
        parts += (b"\x48", _varint(expected_offset & _UINT64))
    return b"".join(parts)


def _encode_protobuf(
    stream: str,
    value: bytes,
    key: bytes,
    headers: dict[str, bytes],
    partition: int,
    correlation_id: str,
    ack_policy: int,
    expected_offset: int,
) -> bytes:
    request = api_pb2.PublishRequest(
        stream=stream,
        partition=partition,
        key=key,
        value=value,
        correlationId=correlation_id,
        ackPolicy=ack_policy,
        expectedOffset=expected_offset,
    )
    if headers:
        request.headers.update(headers)
    return request.SerializeToString()


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    byte = data[pos]
    if byte < 0x80:
        return byte, pos + 1
    result = byte & 0x7F
    shift = 7
    pos += 1
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise IndexError("varint too long")


def _read_wire(data: bytes) -> Answer | None:
    """The fast reading of a plain successful ack; None sends it to protobuf."""
    try:
        pos = 0
        end = len(data)
        ack_at = -1
        ack_end = 0
        response_cid = ""
        while pos < end:
            tag = data[pos]
            pos += 1
            if tag == 0x0A:  # ack
                size, pos = _read_varint(data, pos)
                ack_at, ack_end = pos, pos + size
                pos = ack_end
            elif tag == 0x1A:  # correlationId
                size, pos = _read_varint(data, pos)
                response_cid = data[pos : pos + size].decode()
                pos += size
            else:  # asyncError, or something this reader does not know
                return None
        if ack_at < 0 or ack_end > end:
            return None
        pos = ack_at
        offset = 0
        cid = ""
        while pos < ack_end:
            tag = data[pos]
            pos += 1
            wire_type = tag & 7
            if wire_type == 2:
                size, pos = _read_varint(data, pos)
                if tag == 0x32:  # Ack.correlationId
                    cid = data[pos : pos + size].decode()
                pos += size
            elif wire_type == 0:
                number, pos = _read_varint(data, pos)
                if tag == 0x20:  # Ack.offset
                    offset = number - (1 << 64) if number >> 63 else number
                elif tag == 0x50:  # Ack.ackError
                    return None
            else:
                return None
        if pos != ack_end:
            return None
        return cid or response_cid, offset, data, None
    except (IndexError, UnicodeDecodeError):
        return None


def _read_protobuf(data: bytes) -> Answer:
    """Any PublishResponse, through protobuf (ProtocolError for bad bytes)."""
    response = parse(api_pb2.PublishResponse, data)
    ack = response.ack
    return correlation_id_of(response), ack.offset, ack, publish_response_error(response)


def _read_python(data: bytes) -> Answer:
    answer = _read_wire(data)
    return _read_protobuf(data) if answer is None else answer


def _signed(value: int) -> int:
    # int64/int32 (and enums) travel as 64-bit two's complement varints.
    return value - (1 << 64) if value >> 63 else value


def _read_message_wire(data: bytes) -> Message | None:
    """A received Message from its wire bytes; None sends it to protobuf."""
    try:
        pos = 0
        end = len(data)
        offset = timestamp = partition = policy = 0
        key = value = b""
        stream = subject = reply = inbox = cid = ""
        headers: dict[str, bytes] = {}
        while pos < end:
            tag = data[pos]
            pos += 1
            if tag & 7 == 2:
                size, pos = _read_varint(data, pos)
                stop = pos + size
                if stop > end:
                    return None
                field = tag >> 3
                if field == 3:
                    value = data[pos:stop]
                elif field == 2:
                    key = data[pos:stop]
                elif field == 5:
                    stream = data[pos:stop].decode()
                elif field == 7:
                    subject = data[pos:stop].decode()
                elif field == 8:
                    reply = data[pos:stop].decode()
                elif field == 9:
                    name = ""
                    content = b""
                    at = pos
                    while at < stop:
                        entry_tag = data[at]
                        length, at = _read_varint(data, at + 1)
                        if at + length > stop:
                            return None
                        if entry_tag == 0x0A:
                            name = data[at : at + length].decode()
                        elif entry_tag == 0x12:
                            content = data[at : at + length]
                        else:
                            return None
                        at += length
                    if at != stop:
                        return None
                    headers[name] = content
                elif field == 10:
                    inbox = data[pos:stop].decode()
                elif field == 11:
                    cid = data[pos:stop].decode()
                else:
                    return None
                pos = stop
            elif tag & 7 == 0:
                number, pos = _read_varint(data, pos)
                field = tag >> 3
                if field == 1:
                    offset = _signed(number)
                elif field == 4:
                    timestamp = _signed(number)
                elif field == 6:
                    partition = _signed(number)
                elif field == 12:
                    policy = _signed(number)
                else:
                    return None
            else:
                return None
        if pos != end:
            return None
        return Message.from_wire_fields(
            offset,
            key,
            value,
            timestamp,
            stream,
            partition,
            subject,
            reply,
            headers,
            inbox,
            cid,
            policy,
        )
    except (IndexError, UnicodeDecodeError):
        return None


def _read_message_protobuf(data: bytes) -> Message:
    """A received Message through protobuf (ProtocolError for bad bytes)."""
    return Message.from_proto(parse(api_pb2.Message, data))


def _read_message_python(data: bytes) -> Message:
    message = _read_message_wire(data)
    return _read_message_protobuf(data) if message is None else message


NATIVE_PROTOBUF = api_implementation.Type() != "python"

#: Make the :class:`~pyliftbridge.models.Message` a subscription received.
#: Raises ProtocolError for bytes that are no Message.
read_message = _read_message_protobuf if NATIVE_PROTOBUF else _read_message_python
_encode = _encode_protobuf if NATIVE_PROTOBUF else _encode_wire

#: Decode one PublishResponse into ``(correlation_id, offset, ack_source, error)``.
#: Raises ProtocolError for bytes that are no PublishResponse.
read_publish_response = _read_protobuf if NATIVE_PROTOBUF else _read_python


def encode_publish_request(
    stream: str,
    value: bytes,
    *,
    key: bytes | None,
    headers: Headers | None,
    partition: int,
    ack_policy: int,
    expected_offset: int | None,
    correlation_id: str,
) -> bytes:
    """A serialized PublishRequest; ``value`` and ``key`` are bytes already.

    Raises:
        InvalidArgumentError: an argument has the wrong type or range.
    """
    if type(stream) is not str or not stream:
        _name(stream, "stream")
    if type(partition) is not int or not 0 <= partition <= _INT32_MAX:
        _int(partition, "partition", 0, _INT32_MAX)
    policy = _ack_policy(ack_policy)
    return _encode(
        stream,
        value,
        key or b"",
        _headers(headers) if headers else {},
        partition,
        correlation_id,
        policy,
        -1 if expected_offset is None else _expected_offset(expected_offset),
    )
