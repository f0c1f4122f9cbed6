"""gRPC length-prefixed message framing.

A gRPC message on the wire is one flag byte (1 = compressed), a 4-byte
big-endian length and the payload. HTTP/2 DATA frame boundaries have nothing
to do with message boundaries, so the decoder is incremental: any split of
the byte stream yields the same messages. A zero-length message is a real
message (Liftbridge's Subscribe handshake is one).
"""

from __future__ import annotations

import struct
import zlib
from typing import Callable, Union

from ..errors import MessageSizeError, ProtocolError

__all__ = ["PREFIX", "MessageDecoder", "decompressor_for", "encode_message"]

#: The 5-byte message prefix: compressed flag, payload length.
PREFIX = struct.Struct(">BI")
_pack_prefix = PREFIX.pack
_unpack_prefix = PREFIX.unpack_from

Buffer = Union[bytes, bytearray, memoryview]
Decompressor = Callable[[bytes, int], bytes]


def encode_message(payload: bytes) -> bytes:
    """Return ``payload`` framed as one uncompressed gRPC message."""
    return _pack_prefix(0, len(payload)) + payload


def _inflate(wbits: int) -> Decompressor:
    def inflate(data: bytes, limit: int) -> bytes:
        # A fresh context per message (doc/compression.md); ``limit + 1`` lets us
        # notice an oversize result without inflating a bomb completely.
        d = zlib.decompressobj(wbits)
        try:
            out = d.decompress(data, limit + 1)
        except zlib.error as exc:
            raise ProtocolError(f"cannot decompress gRPC message: {exc}") from exc
        if len(out) > limit or d.unconsumed_tail:
            raise MessageSizeError(f"decompressed gRPC message is larger than {limit} bytes")
        return out

    return inflate


_DECOMPRESSORS: dict[str, Decompressor] = {
    "gzip": _inflate(31),
    "deflate": _inflate(15),
}

#: What we tell servers we can decode (``grpc-accept-encoding``).
ACCEPT_ENCODING = "identity,gzip,deflate"


def decompressor_for(encoding: str | None) -> Decompressor | None:
    """Return the decompressor for a ``grpc-encoding`` value.

    Raises:
        ProtocolError: the encoding is not one we support.
    """
    if encoding is None or encoding == "identity":
        return None
    try:
        return _DECOMPRESSORS[encoding]
    except KeyError:
        raise ProtocolError(f"unsupported grpc-encoding {encoding!r}") from None


class MessageDecoder:
    """Incremental decoder of length-prefixed gRPC messages.

    Args:
        max_message_size: the largest payload accepted. The limit is checked
            from the length prefix, before any of the payload is buffered.

    Feed it bytes with :meth:`feed`; it returns the complete messages. Bytes of
    an incomplete message are kept for the next call.
    """

    __slots__ = ("_buf", "_need", "decompress", "max_message_size")

    def __init__(self, max_message_size: int) -> None:
        self.max_message_size = max_message_size
        self._buf = bytearray()
        #: Payload length of the message being assembled, or -1 while the prefix is incomplete.
        self._need = -1
        #: Set by the connection once the response headers name a ``grpc-encoding``.
        self.decompress: Decompressor | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for a message that is not complete yet."""
        return len(self._buf)

    def feed(self, data: Buffer) -> list[bytes]:
        """Add ``data`` and return every message it completes, in order.

        Raises:
            MessageSizeError: a length prefix announces a message over the maximum.
            ProtocolError: a bad compressed flag or undecodable compressed data.
        """
        out: list[bytes] = []
        buf = self._buf
        if not buf:
            # Fast path: parse straight out of ``data``; copy only the tail.
            # Slices of bytes are the cheapest way to get the messages out
            # (``bytes(memoryview[a:b])`` costs about three times as much).
            view = data if type(data) is bytes else bytes(data)
            end = len(view)
            pos = 0
            while end - pos >= 5:
                flag, size = _unpack_prefix(view, pos)
                if flag or size > self.max_message_size:
                    self._check(flag, size)
                stop = pos + 5 + size
                if stop > end:
                    break
                payload = view[pos + 5 : stop]
                if flag:
                    payload = self._decompress(payload)
                out.append(payload)
                pos = stop
            if pos < end:
                buf += view[pos:]
                self._peek()
            return out
        buf += data
        while True:
            if self._need < 0 and not self._peek():
                return out
            stop = 5 + self._need
            if len(buf) < stop:
                return out
            flag = buf[0]
            payload = bytes(buf[5:stop])
            del buf[:stop]
            self._need = -1
            if flag:
                payload = self._decompress(payload)
            out.append(payload)

    def _peek(self) -> bool:
        """Parse the prefix at the head of the buffer; False if it is incomplete."""
        if len(self._buf) < 5:
            return False
        flag, size = _unpack_prefix(self._buf, 0)
        self._check(flag, size)
        self._need = size
        return True

    def _check(self, flag: int, size: int) -> None:
        if flag not in (0, 1):
            raise ProtocolError(f"invalid gRPC compressed flag {flag}")
        if flag and self.decompress is None:
            # doc/compression.md: a compressed message without grpc-encoding is INTERNAL.
            raise ProtocolError("compressed gRPC message without a grpc-encoding")
        if size > self.max_message_size:
            raise MessageSizeError(
                f"gRPC message of {size} bytes is larger than the maximum of "
                f"{self.max_message_size} bytes"
            )

    def _decompress(self, payload: bytes) -> bytes:
        assert self.decompress is not None  # checked by _check
        return self.decompress(payload, self.max_message_size)
