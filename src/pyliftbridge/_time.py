"""Conversions between Liftbridge's Unix-nanosecond integers and ``datetime``.

All arithmetic is on integers: a float holding nanoseconds since 1970 cannot
represent every microsecond, so ``datetime.fromtimestamp(ns / 1e9)`` would be
off by one now and then.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from .errors import InvalidArgumentError

__all__ = [
    "EPOCH",
    "datetime_from_ns",
    "datetime_to_ns",
    "optional_datetime_from_ns",
    "timedelta_to_ns",
]

#: 1970-01-01T00:00:00Z, the zero of every timestamp on the wire.
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

_MICROSECOND = timedelta(microseconds=1)


def datetime_from_ns(ns: int) -> datetime:
    """Unix nanoseconds → aware UTC datetime (truncated to the microsecond)."""
    return EPOCH + timedelta(microseconds=ns // 1000)


def optional_datetime_from_ns(ns: int) -> datetime | None:
    """Like :func:`datetime_from_ns`, but 0 (the server's "never") → None."""
    return None if ns == 0 else EPOCH + timedelta(microseconds=ns // 1000)


def datetime_to_ns(value: datetime, what: str) -> int:
    """Aware datetime → Unix nanoseconds.

    Raises:
        InvalidArgumentError: ``value`` is naive. A naive datetime could mean
            local time or UTC; guessing would silently shift the position by
            hours, so it is refused.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgumentError(
            f"{what} must be a timezone-aware datetime (e.g. datetime.now(timezone.utc)), "
            f"got naive {value!r}"
        )
    return (value - EPOCH) // _MICROSECOND * 1000


def timedelta_to_ns(value: timedelta) -> int:
    """Timedelta → nanoseconds (timedelta's resolution is one microsecond)."""
    return value // _MICROSECOND * 1000
