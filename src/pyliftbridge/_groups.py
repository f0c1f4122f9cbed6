"""Consumer-group settings shared by both client flavours."""

from __future__ import annotations

from datetime import timedelta
from typing import Callable, Literal, Union

from .errors import InvalidArgumentError

__all__ = ["AUTO_OFFSETS", "AutoOffset", "FetchInterval", "cursor_id", "positive_seconds"]

#: Where a member starts reading a partition the group has no stored position for.
AutoOffset = Literal["new", "earliest", "latest", "none"]
#: Seconds between assignment fetches: a number, a timedelta, or a function of
#: the server's consumer timeout (in seconds); None: 0.4 times that timeout.
FetchInterval = Union[float, timedelta, Callable[[float], float], None]

AUTO_OFFSETS: tuple[str, ...] = ("new", "earliest", "latest", "none")


def cursor_id(group_id: str) -> str:
    """The cursor a group stores its positions under (as go-liftbridge does)."""
    return f"__group:{group_id}"


def positive_seconds(value: float | timedelta, what: str) -> float:
    """``value`` (seconds or a timedelta) as seconds; it must be positive."""
    if isinstance(value, bool) or not isinstance(value, (int, float, timedelta)):
        raise InvalidArgumentError(f"{what} must be a number of seconds or a timedelta")
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not seconds > 0:
        raise InvalidArgumentError(f"{what} must be positive, got {value!r}")
    return seconds
