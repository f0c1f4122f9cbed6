"""The command line's argument types: what they accept, and the usage error for the rest."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone

import pytest

from pyliftbridge import AckPolicy
from pyliftbridge.cli._common import ack_policy, duration, header, start_position, stop_position


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("new", "new"),
        ("EARLIEST", "earliest"),
        ("latest", "latest"),
        ("0", 0),
        ("42", 42),
        ("10m", timedelta(minutes=10)),
        ("250ms", timedelta(milliseconds=250)),
        ("1.5h", timedelta(hours=1.5)),
        ("2d", timedelta(days=2)),
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=timezone.utc)),
        ("2024-05-01T14:00:00+02:00", datetime(2024, 5, 1, 12, tzinfo=timezone.utc)),
    ],
)
def test_start_positions(text: str, expected: object) -> None:
    assert start_position(text) == expected


def test_a_time_without_offset_is_local_time() -> None:
    parsed = start_position("2024-05-01T12:00:00")
    assert isinstance(parsed, datetime) and parsed.tzinfo is not None
    assert parsed == datetime(2024, 5, 1, 12).astimezone()


@pytest.mark.parametrize("text", ["yesterday", "-1", "1.5", "10 minutes", "", "2024-13-01"])
def test_bad_start_positions(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a start position"):
        start_position(text)


def test_stop_positions() -> None:
    assert stop_position("latest") == "latest"
    assert stop_position("7") == 7
    assert stop_position("2024-05-01T12:00:00Z") == datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    for text in ("new", "earliest", "10m"):
        with pytest.raises(argparse.ArgumentTypeError, match="not a stop position"):
            stop_position(text)


def test_durations() -> None:
    assert duration("90") == timedelta(seconds=90)
    assert duration("0.5s") == timedelta(milliseconds=500)
    with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
        duration("5 weeks")


def test_headers() -> None:
    assert header("trace=abc") == ("trace", b"abc")
    assert header("empty=") == ("empty", b"")
    assert header("eq=a=b") == ("eq", b"a=b")
    for text in ("no-equals", "=value", " =x"):
        with pytest.raises(argparse.ArgumentTypeError, match="NAME=VALUE"):
            header(text)


def test_ack_policies() -> None:
    assert ack_policy("all") is AckPolicy.ALL
    assert ack_policy("None") is AckPolicy.NONE
    with pytest.raises(argparse.ArgumentTypeError, match="leader, all or none"):
        ack_policy("most")
