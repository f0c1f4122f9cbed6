"""``pyliftbridge streams ...`` and ``metadata`` against a real server."""

from __future__ import annotations

import json

import pytest

from ._runner import Cli, assert_one_error_line

pytestmark = pytest.mark.integration


def _describe(cli: Cli, stream: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in cli.ok("streams", "describe", stream, "--json").lines()]


def test_stream_lifecycle(cli: Cli, stream: str) -> None:
    created = cli.ok(
        "streams",
        "create",
        stream,
        "--subject",
        f"{stream}.subject",
        "--partitions",
        "3",
        "--retention-max-age",
        "1h",
        "--retention-max-messages",
        "1000",
        "--segment-max-bytes",
        "1048576",
        "--compact",
        "--auto-pause-time",
        "10m",
        "--min-isr",
        "1",
        "--optimistic-concurrency-control",
    )
    assert created.stdout == f"created stream {stream} (subject {stream}.subject, 3 partition(s))\n"

    listed = [json.loads(line) for line in cli.ok("streams", "list", "--json").lines()]
    mine = [s for s in listed if s["name"] == stream]
    assert mine == [
        {
            "name": stream,
            "subject": f"{stream}.subject",
            "partitions": 3,
            "created": mine[0]["created"],
        }
    ]
    assert not any(s["name"].startswith("__") for s in listed)
    assert any(
        s["name"] == "__activity"
        for s in map(json.loads, cli.ok("streams", "list", "--all", "--json").lines())
    )
    table = cli.ok("streams", "list").stdout
    assert stream in table and f"{stream}.subject" in table

    partitions = _describe(cli, stream)
    assert [p["partition"] for p in partitions] == [0, 1, 2]
    assert all(p["high_watermark"] == -1 and p["newest_offset"] == -1 for p in partitions)
    assert all(not p["paused"] and not p["readonly"] for p in partitions)
    assert all(p["leader"] and p["isr"] == [p["leader"]] for p in partitions)

    cli.ok("publish", stream, "one", "--partition", "2")
    assert _describe(cli, stream)[2]["newest_offset"] == 0

    paused = cli.ok("streams", "pause", stream, "--partition", "1")
    assert paused.stdout == f"paused partition(s) 1 of stream {stream}\n"
    assert [p["paused"] for p in _describe(cli, stream)] == [False, True, False]
    # The table is the same information for people.
    table = cli.ok("streams", "describe", stream).stdout
    assert "high watermark" in table and "yes" in table

    cli.ok("streams", "readonly", stream, "-p", "0")
    assert [p["readonly"] for p in _describe(cli, stream)] == [True, False, False]
    refused = cli("publish", stream, "nope", "--partition", "0")
    assert_one_error_line(refused, 1, "ReadonlyPartitionError")
    cli.ok("streams", "readonly", stream, "-p", "0", "--off")
    assert cli.ok("publish", stream, "yes", "--partition", "0").stdout == "partition 0 offset 0\n"

    again = cli("streams", "create", stream)
    assert_one_error_line(again, 1, "StreamExistsError")
    cli.ok("streams", "create", stream, "--if-not-exists")

    assert cli.ok("streams", "delete", stream).stdout == f"deleted stream {stream}\n"
    listed = [json.loads(line) for line in cli.ok("streams", "list", "--json").lines()]
    assert stream not in [s["name"] for s in listed]


@pytest.mark.parametrize(
    "args",
    [
        ("streams", "describe", "cli-no-such-stream"),
        ("streams", "delete", "cli-no-such-stream"),
        ("streams", "pause", "cli-no-such-stream"),
        ("metadata", "cli-no-such-stream"),
    ],
)
def test_missing_stream_is_one_line_and_exit_1(cli: Cli, args: tuple[str, ...]) -> None:
    assert_one_error_line(cli(*args), 1, "cli-no-such-stream" if args[0] == "metadata" else "")


def test_metadata(cli: Cli, stream: str) -> None:
    cli.ok("streams", "create", stream, "--partitions", "2")
    view = json.loads(cli.ok("metadata", "--json").stdout)
    assert cli.address in [b["address"] for b in view["brokers"]]
    assert sorted(view["streams"][stream]["partitions"]) == ["0", "1"]
    assert "__cursors" not in view["streams"]
    only = json.loads(cli.ok("metadata", stream, "--json").stdout)
    assert list(only["streams"]) == [stream]
    table = cli.ok("metadata").stdout
    assert cli.address in table and stream in table
