"""Fuzz targets: every decoder that reads a server's bytes, driven by arbitrary bytes.

Each target takes ``bytes`` and must end normally or with a
:class:`~pyliftbridge.LiftbridgeError`; anything else (a KeyError, protobuf's
DecodeError, a ValueError from an enum...) is a finding. Targets also check
that what they hold stays bounded by the configured limits. The same targets
are driven by hypothesis (``test_fuzz.py``, on CPython and PyPy) and by
atheris (``run_atheris.py``, CPython, coverage-guided, for the long runs).

Structured inputs (protobuf messages with chosen field values, frame
sequences) are built from the bytes by :class:`Reader`, so that both fuzzers
reach past the first checks a decoder makes.
"""

from __future__ import annotations

import contextlib
import struct
from datetime import datetime, timezone
from typing import Callable

from pyliftbridge._core.connection import GrpcConnection
from pyliftbridge._core.framing import MessageDecoder, decompressor_for
from pyliftbridge._core.metadata import decode_grpc_message, decode_metadata, status_from_http
from pyliftbridge._decode import parse
from pyliftbridge._pb import api_pb2
from pyliftbridge.envelope import MAGIC, decode_ack, decode_message
from pyliftbridge.errors import LiftbridgeError
from pyliftbridge.models import Ack, ActivityEvent, Message, Metadata

__all__ = ["TARGETS", "Reader"]

#: Limits the targets are run with, and hold the decoders to.
MAX_MESSAGE = 64 * 1024
STREAM_WINDOW = 256 * 1024


class Reader:
    """Draws values from fuzz bytes; past the end it yields zeros."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk.ljust(n, b"\0")

    def uint(self, bits: int) -> int:
        return int.from_bytes(self.take(bits // 8), "big")

    def int(self, bits: int) -> int:
        value = self.uint(bits)
        return value - (1 << bits) if value >= 1 << (bits - 1) else value

    def small(self, limit: int) -> int:
        return self.uint(8) % (limit + 1)

    def choice(self, options: list[int]) -> int:
        return options[self.uint(8) % len(options)]

    def blob(self, limit: int = 16) -> bytes:
        return self.take(self.small(limit))

    def text(self, limit: int = 8) -> str:
        return self.blob(limit).decode("utf-8", "replace")

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk


_INT64 = [0, 1, -1, 2**63 - 1, -(2**63), 1_700_000_000_000_000_000, 10**18]


def _int64(r: Reader) -> int:
    return r.choice(_INT64) if r.uint(8) & 1 else r.int(64)


def _typed(fn: Callable[[], object]) -> None:
    """Run ``fn``; a LiftbridgeError is an allowed outcome, anything else escapes."""
    with contextlib.suppress(LiftbridgeError):
        fn()


# ----------------------------------------------------------- transport layer


def _started_connection() -> tuple[GrpcConnection, int]:
    """A client connection with one call whose response headers arrived."""
    conn = GrpcConnection(
        "fuzz:1", max_receive_message_size=MAX_MESSAGE, stream_window=STREAM_WINDOW
    )
    conn.initiate()
    call_id = conn.start_call("/proto.API/Subscribe")
    conn.data_to_send()
    settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    # HEADERS on stream 1, END_HEADERS, HPACK: ":status: 200" (indexed 8), content-type literal.
    block = b"\x88" + b"\x0f\x10\x10application/grpc"
    headers = len(block).to_bytes(3, "big") + b"\x01\x04\x00\x00\x00\x01" + block
    conn.receive_data(settings + headers)
    return conn, call_id


def connection_bytes(data: bytes) -> None:
    """Server bytes after a valid start, split into reads where the fuzz says."""
    conn, _ = _started_connection()
    r = Reader(data)
    cuts = r.small(4)
    body = r.rest()
    step = max(1, len(body) // (cuts + 1))
    for start in range(0, len(body), step):
        _typed(lambda chunk=body[start : start + step]: conn.receive_data(chunk))
        _typed(conn.data_to_send)
        # What is held for an incomplete frame or message stays bounded.
        assert len(conn._inbuf) <= conn._h2.max_inbound_frame_size + 9, len(conn._inbuf)
        for call in conn._calls.values():
            assert call.decoder.buffered <= MAX_MESSAGE + 5, call.decoder.buffered


def connection_frames(data: bytes) -> None:
    """Well-formed frame headers with fuzzed types, flags, stream ids and payloads."""
    conn, _ = _started_connection()
    r = Reader(data)
    out = bytearray()
    for _ in range(r.small(8)):
        kind = r.choice([0, 0, 0, 1, 3, 4, 6, 7, 8, 9, r.uint(8)])
        flags = r.uint(8)
        stream = r.choice([0, 1, 1, 1, 3, 2, r.uint(32) & 0x7FFFFFFF])
        if kind == 0 and r.uint(8) & 1:
            size = r.choice([0, 5, MAX_MESSAGE, MAX_MESSAGE + 1, 2**32 - 1, r.uint(32)])
            payload = bytes([r.small(2)]) + struct.pack(">I", size) + r.blob(32)
        else:
            payload = r.blob(40)
        out += len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big")
        out += payload
    _typed(lambda: conn.receive_data(bytes(out)))
    _typed(conn.data_to_send)


def message_decoder(data: bytes) -> None:
    """gRPC deframing (with or without compression) of any bytes, any split."""
    r = Reader(data)
    decoder = MessageDecoder(MAX_MESSAGE)
    decoder.decompress = decompressor_for(["identity", "gzip", "deflate"][r.small(2)])
    cut = r.small(16)
    body = r.rest()
    try:
        for start in range(0, len(body), cut or len(body) or 1):
            decoder.feed(body[start : start + (cut or len(body))])
            assert decoder.buffered <= MAX_MESSAGE + 5
    except LiftbridgeError:
        pass


def trailers(data: bytes) -> None:
    """Trailers and headers as the server may send them: status, message, metadata."""
    from pyliftbridge._core.connection import _status_from_trailers

    r = Reader(data)
    pairs = []
    for _ in range(r.small(6)):
        name = r.choice([0, 1, 2, 3, 4]) if r.uint(8) & 1 else 5
        names = [b"grpc-status", b"grpc-message", b"x-bin", b"grpc-status-details-bin", b":status"]
        pairs.append((names[name] if name < 5 else r.blob(8), r.blob(24)))
    _status_from_trailers(pairs)
    decode_metadata(pairs)
    decode_grpc_message(r.blob(32).decode("latin-1"))
    status_from_http(r.int(32))


# ------------------------------------------------------------ message layer


def envelope(data: bytes) -> None:
    """NATS envelopes: raw bytes, and bytes behind a valid magic number."""
    r = Reader(data)
    kind = r.small(3)
    body = r.rest()
    for candidate in (body, MAGIC + b"\x00" + bytes([8 + (kind & 4), kind & 1, kind >> 1]) + body):
        _typed(lambda c=candidate: decode_message(c))
        _typed(lambda c=candidate: decode_ack(c))


def _partition(r: Reader, brokers: list[str]) -> api_pb2.PartitionMetadata:
    def broker_id() -> str:
        return brokers[r.small(len(brokers) - 1)] if brokers and r.uint(8) & 3 else r.text(4)

    ts = api_pb2.PartitionEventTimestamps
    return api_pb2.PartitionMetadata(
        id=r.int(32),
        leader=broker_id(),
        replicas=[broker_id() for _ in range(r.small(3))],
        isr=[broker_id() for _ in range(r.small(3))],
        highWatermark=_int64(r),
        newestOffset=_int64(r),
        paused=bool(r.uint(8) & 1),
        readonly=bool(r.uint(8) & 1),
        messagesReceivedTimestamps=ts(firstTimestamp=_int64(r), latestTimestamp=_int64(r)),
        pauseTimestamps=ts(firstTimestamp=_int64(r)),
        readonlyTimestamps=ts(latestTimestamp=_int64(r)),
    )


def metadata_response(data: bytes) -> None:
    """FetchMetadata answers with odd values: unknown brokers, bad ports, extreme timestamps."""
    r = Reader(data)
    brokers = [
        api_pb2.Broker(
            id=r.text(3),
            host=r.text(6),
            port=r.int(32),
            partitionCount=r.int(32),
            leaderCount=r.int(32),
        )
        for _ in range(r.small(3))
    ]
    ids = [b.id for b in brokers]
    streams = []
    for _ in range(r.small(3)):
        partitions = {
            r.int(32) if r.uint(8) & 1 else i: _partition(r, ids) for i in range(r.small(3))
        }
        streams.append(
            api_pb2.StreamMetadata(
                name=r.text(4),
                subject=r.text(4),
                error=r.uint(32) & 0x7FFFFFFF if r.uint(8) & 1 else r.small(1),
                partitions=partitions,
                creationTimestamp=_int64(r),
            )
        )
    groups = [
        api_pb2.ConsumerGroupMetadata(
            groupId=r.text(4), error=r.small(2), coordinator=r.text(3), epoch=r.uint(64)
        )
        for _ in range(r.small(2))
    ]
    pb = api_pb2.FetchMetadataResponse(
        brokers=brokers, streamMetadata=streams, groupMetadata=groups
    )
    # Through the wire format, as the client receives it.
    wire = pb.SerializeToString() + r.blob(8)  # and maybe a stray field or garbage
    _typed(
        lambda: Metadata.from_proto(
            parse(api_pb2.FetchMetadataResponse, wire), datetime.now(timezone.utc)
        )
    )


def message_and_ack(data: bytes) -> None:
    """Subscription messages, acks and activity events with any field values."""
    r = Reader(data)
    message = api_pb2.Message(
        offset=_int64(r),
        key=r.blob(),
        value=r.blob(),
        timestamp=_int64(r),
        stream=r.text(),
        partition=r.int(32),
        subject=r.text(),
        headers={r.text(3): r.blob(4) for _ in range(r.small(3))},
        ackPolicy=r.int(32) & 0x7FFFFFFF if r.uint(8) & 1 else r.small(2),
    )
    received = parse(api_pb2.Message, message.SerializeToString())
    _typed(lambda: Message.from_proto(received))
    event = api_pb2.ActivityStreamEvent(
        id=r.uint(64), op=r.uint(32) & 0x7FFFFFFF if r.uint(8) & 1 else r.small(7)
    )
    raw_event = event.SerializeToString() if r.uint(8) & 1 else r.blob(32)
    carrier = Message.from_proto(api_pb2.Message(stream="__activity", value=raw_event))
    _typed(lambda: ActivityEvent.from_message(carrier))
    ack = api_pb2.Ack(
        stream=r.text(),
        partitionSubject=r.text(),
        msgSubject=r.text(),
        offset=_int64(r),
        ackPolicy=r.int(32) & 0x7FFFFFFF if r.uint(8) & 1 else r.small(2),
        receptionTimestamp=_int64(r),
        commitTimestamp=_int64(r),
        ackError=r.int(32) & 0x7FFFFFFF if r.uint(8) & 1 else r.small(4),
    )
    _typed(lambda: Ack.from_proto(parse(api_pb2.Ack, ack.SerializeToString()), r.int(32)))


def protobuf_bytes(data: bytes) -> None:
    """Raw bytes as every response type the client parses."""
    for message_type in (
        api_pb2.FetchMetadataResponse,
        api_pb2.Message,
        api_pb2.PublishResponse,
        api_pb2.FetchPartitionMetadataResponse,
        api_pb2.JoinConsumerGroupResponse,
        api_pb2.FetchConsumerGroupAssignmentsResponse,
    ):
        _typed(lambda t=message_type: parse(t, data))


#: Name -> target.
TARGETS: dict[str, Callable[[bytes], None]] = {
    "connection_bytes": connection_bytes,
    "connection_frames": connection_frames,
    "message_decoder": message_decoder,
    "trailers": trailers,
    "envelope": envelope,
    "metadata_response": metadata_response,
    "message_and_ack": message_and_ack,
    "protobuf_bytes": protobuf_bytes,
}
