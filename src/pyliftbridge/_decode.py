"""Parsing protobuf bytes received from a server, with a typed error for bad ones."""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as _PbMessage

from .errors import ProtocolError

__all__ = ["parse"]

_M = TypeVar("_M", bound=_PbMessage)


def parse(message_type: type[_M], data: bytes) -> _M:
    """Parse ``data`` as a ``message_type``.

    Raises:
        ProtocolError: the bytes are not a valid ``message_type`` (protobuf's
            own DecodeError is no LiftbridgeError, and a server's garbage must
            not escape the error tree).
    """
    try:
        return message_type.FromString(data)
    except DecodeError as exc:
        name = message_type.DESCRIPTOR.name
        raise ProtocolError(f"the server sent a malformed {name}: {exc}") from exc
