"""gRPC header values: timeouts, status messages, custom metadata, HTTP status mapping."""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Iterable, Sequence
from typing import Union
from urllib.parse import quote, unquote

from .._status import Metadata, Status, StatusCode
from ..errors import InvalidArgumentError

__all__ = [
    "decode_grpc_message",
    "decode_metadata",
    "encode_grpc_message",
    "encode_metadata",
    "encode_timeout",
    "status_from_http",
]

MetadataValue = Union[str, bytes]

# (multiplier, divisor, unit): the value in a unit is seconds * multiplier / divisor.
_TIMEOUT_UNITS = (
    (10**9, 1, "n"),
    (10**6, 1, "u"),
    (10**3, 1, "m"),
    (1, 1, "S"),
    (1, 60, "M"),
    (1, 3600, "H"),
)
_TIMEOUT_MAX = 99_999_999


def encode_timeout(seconds: float) -> str:
    """Encode a timeout for ``grpc-timeout``: at most 8 digits and a unit.

    The finest unit whose value fits in 8 digits wins, rounded up so a
    deadline is never shortened by encoding (as grpc-go does). Timeouts beyond
    the largest encodable one (99999999 hours, infinity included) are capped.

    Raises:
        InvalidArgumentError: ``seconds`` is NaN.
    """
    if isinstance(seconds, float) and math.isnan(seconds):
        raise InvalidArgumentError("timeout must be a number, not NaN")
    if seconds <= 0:
        return "1n"
    if seconds >= _TIMEOUT_MAX * 3600:
        return f"{_TIMEOUT_MAX}H"
    # Exact integer arithmetic: a float product such as 0.1 * 1e6 can round
    # down to a whole number and so lose the rounding up (0.1 s -> "100000u",
    # a hair shorter than the float 0.1).
    num, den = seconds.as_integer_ratio()
    for multiplier, divisor, unit in _TIMEOUT_UNITS:
        value = -(-num * multiplier // (den * divisor))  # ceiling division
        if value <= _TIMEOUT_MAX:
            return f"{value}{unit}"
    return f"{_TIMEOUT_MAX}H"


# grpc-message: bytes 0x20-0x7E except '%' stay as they are; everything else is
# percent-encoded UTF-8 (PROTOCOL-HTTP2.md, "Responses").
_MESSAGE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if c != 0x25)


def encode_grpc_message(message: str) -> str:
    """Percent-encode a status message for the ``grpc-message`` trailer."""
    return quote(message, safe=_MESSAGE_SAFE, encoding="utf-8")


def decode_grpc_message(value: str) -> str:
    """Decode ``grpc-message``; never fails (bad escapes are kept or replaced)."""
    return unquote(value, encoding="utf-8", errors="replace")


_KEY_RE = re.compile(r"^[0-9a-z_.\-]+$")
_ASCII_VALUE_RE = re.compile(r"^[\x20-\x7e]*$")
_RESERVED = frozenset({"te", "content-type", "user-agent", "connection", "host"})


def encode_metadata(metadata: Iterable[tuple[str, MetadataValue]]) -> list[tuple[str, str]]:
    """Validate custom call metadata and encode it as header fields.

    Names are lower-cased ASCII of ``[0-9a-z_.-]``; ``grpc-`` names are reserved.
    Values of ``-bin`` names are bytes and go out as unpadded base64; other
    values must be printable ASCII.

    Raises:
        InvalidArgumentError: a name or value breaks these rules.
    """
    out: list[tuple[str, str]] = []
    for name, value in metadata:
        key = name.lower()
        if not _KEY_RE.match(key) or key.startswith("grpc-") or key in _RESERVED:
            raise InvalidArgumentError(f"invalid or reserved metadata name {name!r}")
        if key.endswith("-bin"):
            raw = value.encode() if isinstance(value, str) else bytes(value)
            out.append((key, base64.b64encode(raw).decode("ascii").rstrip("=")))
        else:
            if isinstance(value, bytes):
                raise InvalidArgumentError(
                    f"metadata {name!r} takes a str; only -bin names take bytes"
                )
            if not _ASCII_VALUE_RE.match(value):
                raise InvalidArgumentError(f"metadata {name!r} must be printable ASCII")
            out.append((key, value))
    return out


def _b64decode_lenient(value: str) -> bytes:
    # Senders may or may not pad, and repeated values may arrive comma-joined.
    parts = []
    for raw in value.split(","):
        piece = raw.strip()
        try:
            parts.append(base64.b64decode(piece + "=" * (-len(piece) % 4)))
        except (binascii.Error, ValueError):
            parts.append(piece.encode("latin-1", "replace"))
    return b"".join(parts)


# grpc-* names are reserved (PROTOCOL-HTTP2.md, "Custom-Metadata"): status,
# message, encodings and future additions are no custom metadata. The one that
# applications read (the rich error details) stays.
_RESERVED_KEPT = frozenset({"grpc-status-details-bin"})


def decode_metadata(headers: Sequence[tuple[bytes, bytes]]) -> Metadata:
    """Turn received header fields into custom metadata (reserved names dropped)."""
    out: list[tuple[str, MetadataValue]] = []
    for raw_name, raw_value in headers:
        name = raw_name.decode("ascii", "replace")
        if (
            name.startswith(":")
            or name == "content-type"
            or (name.startswith("grpc-") and name not in _RESERVED_KEPT)
        ):
            continue
        value = raw_value.decode("latin-1")
        if name.endswith("-bin"):
            out.append((name, _b64decode_lenient(value)))
        else:
            out.append((name, value))
    return tuple(out)


# doc/http-grpc-status-mapping.md
_HTTP_TO_GRPC = {
    400: StatusCode.INTERNAL,
    401: StatusCode.UNAUTHENTICATED,
    403: StatusCode.PERMISSION_DENIED,
    404: StatusCode.UNIMPLEMENTED,
    429: StatusCode.UNAVAILABLE,
    431: StatusCode.INTERNAL,
    502: StatusCode.UNAVAILABLE,
    503: StatusCode.UNAVAILABLE,
    504: StatusCode.UNAVAILABLE,
}


def status_from_http(http_status: int, metadata: Metadata = ()) -> Status:
    """Synthesise a gRPC status for a response with a non-200 ``:status``."""
    code = _HTTP_TO_GRPC.get(http_status, StatusCode.UNKNOWN)
    return Status(code, f"HTTP status {http_status} without gRPC status", metadata)
