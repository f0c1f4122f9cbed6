"""gRPC status codes and the status triple carried by every finished call.

This is a leaf module: it imports nothing from pyliftbridge.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Union

#: How the message of a status made from the server's RST_STREAM begins
#: (lower case): such a status is the transport's, never the application's word.
STREAM_RESET_BY_SERVER = "stream reset by the server"

#: Metadata as it travels on the wire: (lower-case name, value) pairs. Values of
#: names ending in ``-bin`` are bytes, all others are str.
Metadata = tuple[tuple[str, Union[str, bytes]], ...]


class StatusCode(enum.IntEnum):
    """The canonical gRPC status codes (``doc/statuscodes.md``)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    @classmethod
    def from_wire(cls, value: int) -> StatusCode:
        """Map a received numeric code to the enum; codes outside 0..16 become UNKNOWN."""
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN


@dataclass(frozen=True)
class Status:
    """How a call ended: code, human-readable message and trailing metadata."""

    code: StatusCode
    message: str = ""
    trailing_metadata: Metadata = field(default=())

    @property
    def ok(self) -> bool:
        """True when the call succeeded."""
        return self.code is StatusCode.OK

    def __str__(self) -> str:
        if self.message:
            return f"{self.code.name}: {self.message}"
        return self.code.name
