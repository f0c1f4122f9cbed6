"""``publish``, ``subscribe``, ``cursors`` and ``activity`` against a real server."""

from __future__ import annotations

import base64
import json
import signal
import time
from datetime import datetime, timedelta, timezone

import pytest

from pyliftbridge import KeyPartitioner

from ._runner import Cli, assert_one_error_line

pytestmark = pytest.mark.integration


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_stdin_round_trip_through_json(cli: Cli, stream: str) -> None:
    cli.ok("streams", "create", stream)
    lines = ["first", "", "späť — ünïcode", "key=value, with spaces  "]
    published = cli.ok(
        "publish",
        stream,
        "--key",
        "k-1",
        "-H",
        "trace=abc",
        "--header",
        "empty=",
        input="".join(f"{line}\n" for line in lines),
    )
    assert published.lines() == [f"partition 0 offset {i}" for i in range(len(lines))]
    assert f"published {len(lines)} message(s) to {stream}" in published.stderr

    read = cli.ok("subscribe", stream, "--from", "earliest", "--to", "latest", "--format", "json")
    records = _json_lines(read.stdout)
    assert [r["value"] for r in records] == lines
    assert [r["offset"] for r in records] == list(range(len(lines)))
    for record in records:
        assert record["stream"] == stream and record["partition"] == 0
        assert record["key"] == "k-1"
        headers = record["headers"]
        assert isinstance(headers, dict)
        assert headers["trace"] == "abc" and headers["empty"] == ""
        assert "base64" not in record
        stamp = datetime.fromisoformat(str(record["timestamp"]).replace("Z", "+00:00"))
        assert abs(stamp - datetime.now(timezone.utc)) < timedelta(minutes=5)

    # "-" is stdin too, and a final line without a newline is still a message.
    cli.ok("publish", stream, "-", input="no newline at the end")
    text = cli.ok("subscribe", stream, "--from", "4", "--to", "latest").lines()
    assert len(text) == 1
    assert text[0].startswith("0:4 ") and text[0].endswith(" no newline at the end")
    assert "key=" not in text[0]


def test_binary_values_and_raw_format(cli: Cli, stream: str) -> None:
    cli.ok("streams", "create", stream)
    blob = b"\xff\xfe\x00bin"
    cli.ok("publish", stream, input=blob + b"\n")
    cli.ok("publish", stream, "plain")
    records = _json_lines(
        cli.ok("subscribe", stream, "--from", "earliest", "--limit", "2", "-f", "json").stdout
    )
    assert records[0]["base64"] == ["value"]
    assert base64.b64decode(str(records[0]["value"])) == blob
    assert records[1]["value"] == "plain" and "base64" not in records[1]
    raw = cli.ok("subscribe", stream, "--from", "earliest", "--limit", "2", "--format", "raw")
    assert raw.stdout_bytes == blob + b"\nplain\n"


def test_single_value_partitions_and_positions(cli: Cli, stream: str) -> None:
    cli.ok("streams", "create", stream, "--partitions", "3")
    assert cli.ok("publish", stream, "to-two", "-p", "2").stdout == "partition 2 offset 0\n"
    cut = datetime.now(timezone.utc).isoformat()
    keys = [f"customer-{i}" for i in range(8)]
    keyed = cli.ok(
        "publish",
        stream,
        "--key-separator",
        ":",
        "--key-partitioner",
        "--ack-policy",
        "all",
        input="".join(f"{key}:{key}\n" for key in keys),
    )
    expected = [KeyPartitioner()(stream, key.encode(), b"", 3) for key in keys]
    assert [line.split()[1] for line in keyed.lines()] == [str(p) for p in expected]

    every = _json_lines(
        cli.ok(
            "subscribe", stream, "-a", "--from", "earliest", "--to", "latest", "-f", "json"
        ).stdout
    )
    assert sorted(str(r["value"]) for r in every) == sorted([*keys, "to-two"])
    for record in every:
        if record["value"] != "to-two":
            assert record["key"] == record["value"]
            assert record["partition"] == expected[keys.index(str(record["key"]))]

    # Positions by time: an hour ago is before everything; --to a time in the past
    # stops there; a time in the future is refused before anything is sent.
    two = cli.ok("subscribe", stream, "-p", "2", "--from", "1h", "--to", "latest", "-f", "json")
    assert "to-two" in [r["value"] for r in _json_lines(two.stdout)]
    until_cut = cli.ok("subscribe", stream, "-p", "2", "--from", "earliest", "--to", cut)
    assert until_cut.lines()[0].endswith(" to-two") and len(until_cut.lines()) == 1
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    future = cli("subscribe", stream, "-p", "2", "--to", later)
    assert_one_error_line(future, 2, "stop_at must not be in the future")


def test_ctrl_c_ends_a_tail_cleanly(cli: Cli, stream: str) -> None:
    cli.ok("streams", "create", stream)
    tail = cli.popen("subscribe", stream, "--from", "earliest")
    try:
        cli.ok("publish", stream, "seen by the tail")
        assert tail.stdout is not None
        line = tail.stdout.readline()
        assert line.decode().rstrip().endswith("seen by the tail")
        tail.send_signal(signal.SIGINT)
        _out, err = tail.communicate(timeout=20)
    finally:
        if tail.poll() is None:
            tail.kill()
    assert tail.returncode == 0, err
    assert b"Traceback" not in err


def test_consumer_group(cli: Cli, stream: str) -> None:
    cli.ok("streams", "create", stream, "--partitions", "2")
    cli.ok("publish", stream, input="a\nb\nc\n")
    cli.ok("publish", stream, "-p", "1", input="d\n")
    got = cli.ok(
        "subscribe", stream, "--group", f"{stream}-g", "--from", "earliest", "-n", "4", "-f", "json"
    )
    assert sorted(r["value"] for r in _json_lines(got.stdout)) == ["a", "b", "c", "d"]
    misuse = cli("subscribe", stream, "--group", "g", "--to", "latest")
    assert_one_error_line(misuse, 2, "--to")


def test_cursors(cli: Cli, stream: str) -> None:
    cli.ok("streams", "create", stream, "--partitions", "2")
    assert cli.ok("cursors", "get", "c1", stream).stdout == "-1\n"
    stored = cli.ok("cursors", "set", "c1", stream, "41", "--partition", "1")
    assert stored.stdout == f"cursor c1 of {stream}/1 set to 41\n"
    assert cli.ok("cursors", "get", "c1", stream, "-p", "1").stdout == "41\n"
    assert cli.ok("cursors", "get", "c1", stream, "-p", "0").stdout == "-1\n"


def test_activity(cli: Cli, stream: str) -> None:
    cli.ok("streams", "create", stream, "--partitions", "2")
    newest = cli.ok("activity", "--from", "latest", "--limit", "1", "--format", "json")
    event = json.loads(newest.stdout)
    assert event["op"] == "CREATE_STREAM"
    assert event["stream"] == stream and event["partitions"] == [0, 1]
    cli.ok("streams", "delete", stream)
    text = cli.ok("activity", "--from", "latest", "--limit", "1").stdout
    assert text.startswith("#") and text.rstrip().endswith(f"DELETE_STREAM stream={stream}")
    first = cli.ok("activity", "--limit", "1").stdout
    assert "CREATE_STREAM" in first


def test_publish_errors(cli: Cli, stream: str) -> None:
    assert_one_error_line(cli("publish", "cli-no-such-stream", "x"), 1, "no such stream")
    assert_one_error_line(cli("publish", stream, "x", "-H", "no-equals-sign"), 2, "NAME=VALUE")
    assert_one_error_line(cli("publish", stream, "x", "--ack-policy", "most"), 2, "ack policy")
    assert_one_error_line(cli("subscribe", stream, "--from", "yesterday"), 2, "start position")
    assert_one_error_line(cli("subscribe", "cli-no-such-stream"), 1, "cli-no-such-stream")


def test_unreachable_broker(cli: Cli) -> None:
    started = time.monotonic()
    result = cli("streams", "list", "--brokers", "127.0.0.1:1", "--timeout", "1")
    assert_one_error_line(result, 1, "127.0.0.1:1", "UnavailableError")
    assert time.monotonic() - started < 30
    debug = cli("--debug", "metadata", "--brokers", "127.0.0.1:1", "--timeout", "1")
    assert debug.returncode == 1 and "Traceback" in debug.stderr
