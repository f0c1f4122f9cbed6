"""Parsing protobuf bytes received from a server, with a typed error for bad ones."""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as _PbMessage

from .errors import ProtocolError

__all__ = ["parse"]

_M = TypeVar("_M", bound=_PbMessage)


def parse(
    message_type: type[_M],
    data: bytes,
    *,
    error: type[ProtocolError] = ProtocolError,
    what: str = "",
    kind: str = "",
) -> _M:
    """Parse ``data`` as a ``message_type``.

    ``what`` and ``kind`` name the bytes and the type in the error message.

    Raises:
        ProtocolError: (or ``error``) the bytes are not a valid
            ``message_type``: protobuf's own exceptions are no
            LiftbridgeError, and a server's garbage must not escape the tree.
    """
    try:
        return message_type.FromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        # RuntimeError/ValueError: what some protobuf backends raise on bad input.
        kind = kind or message_type.DESCRIPTOR.name
        raise error(f"{what or 'a response'} is not a valid {kind}: {exc}") from exc
