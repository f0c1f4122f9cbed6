"""``bench`` (publish and consume modes, JSON, CSV, plot, missing extras) and ``serve``."""

from __future__ import annotations

import csv
import importlib.util
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ._runner import Cli, assert_one_error_line

pytestmark = pytest.mark.integration

#: The keys the side-by-side benchmark (benchmarks/compare.py) reads.
JSON_KEYS = {
    "mode",
    "client",
    "implementation",
    "python_version",
    "messages",
    "message_size",
    "ack_policy",
    "window",
    "partitions",
    "duration",
    "messages_per_second",
    "mb_per_second",
    "cpu_seconds",
    "latency_ms",
    "errors",
    "lost",
}
LATENCY_KEYS = {"p50", "p90", "p99", "p99_9", "max"}

needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None,
    reason="matplotlib is not installed (the cli extra brings it on CPython only)",
)


def _bench(cli: Cli, *args: str) -> dict[str, object]:
    result = cli.ok("bench", *args, "--json")
    report = json.loads(result.stdout)  # stdout holds the one JSON object and nothing else
    assert isinstance(report, dict)
    missing = JSON_KEYS - report.keys()
    assert not missing, missing
    return report


def test_publish_then_consume(cli: Cli, stream: str, tmp_path: Path) -> None:
    table = tmp_path / "runs.csv"
    first = _bench(
        cli,
        "--stream",
        stream,
        "--partitions",
        "3",
        "--publishers",
        "2",
        "--key-partitioner",
        "--keys",
        "7",
        "--messages",
        "600",
        "--size",
        "64",
        "--window",
        "50",
        "--csv",
        str(table),
    )
    assert first["mode"] == "publish" and first["client"] == "sync"
    assert first["messages"] == 600 and first["message_size"] == 64
    assert first["partitions"] == 3 and first["window"] == 50
    assert first["errors"] == 0 and first["lost"] == 0 and first["verified"] is True
    assert first["read_back"] == 600
    assert first["implementation"] == sys.implementation.name.replace("cpython", "CPython").replace(
        "pypy", "PyPy"
    )
    latency = first["latency_ms"]
    assert isinstance(latency, dict) and latency.keys() >= LATENCY_KEYS
    assert (
        0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["p99_9"] <= latency["max"]
    )
    assert float(first["messages_per_second"]) > 0 and float(first["cpu_seconds"]) > 0

    # The stream is kept; a second run appends and checks only its own messages.
    second = _bench(
        cli,
        "--stream",
        stream,
        "--client",
        "async",
        "--sync",
        "--ack-policy",
        "all",
        "--duration",
        "0.5",
        "--size",
        "64",
        "--csv",
        str(table),
    )
    assert second["client"] == "async" and second["ack_policy"] == "all"
    assert second["verified"] is True and second["lost"] == 0 and second["errors"] == 0
    published = 600 + int(str(second["messages"]))
    rows = list(csv.DictReader(table.open()))
    assert [row["client"] for row in rows] == ["sync", "async"]
    assert rows[0]["latency_p99_ms"] and rows[0]["messages"] == "600"

    for client in ("sync", "async"):
        consumed = _bench(
            cli,
            "--mode",
            "consume",
            "--stream",
            stream,
            "--messages",
            str(published),
            "--client",
            client,
        )
        assert consumed["mode"] == "consume" and consumed["messages"] == published
        assert consumed["partitions"] == 3 and consumed["message_size"] == 64
    too_many = cli("bench", "--mode", "consume", "--stream", stream, "-n", str(published + 1))
    assert_one_error_line(too_many, 1, f"only {published} of the {published + 1}")


def test_text_report_and_no_verify(cli: Cli) -> None:
    text = cli.ok("bench", "--messages", "200", "--ack-policy", "none")
    assert "=== pyliftbridge publish benchmark ===" in text.stdout
    assert "Read back:    " in text.stdout and "verified" in text.stdout
    assert "Ack latency" not in text.stdout  # no acks with ack policy none
    quick = _bench(cli, "--messages", "200", "--no-verify")
    assert quick["verified"] is False and quick["lost"] is None and quick["read_back"] is None


@needs_matplotlib
def test_plot_is_a_png(cli: Cli, tmp_path: Path) -> None:
    png = tmp_path / "run.png"
    report = _bench(cli, "--messages", "300", "--plot", str(png))
    assert report["messages"] == 300
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def test_demo_starts_its_own_server(cli: Cli) -> None:
    env = {k: v for k, v in cli.env.items() if k != "LIFTBRIDGE_BROKERS"}
    demo = cli("demo", "--messages", "300", env=env)
    assert demo.returncode == 0, demo.stderr
    assert "starting a local Liftbridge server" in demo.stderr
    assert "300 messages verified, 0 lost" in demo.stdout


def test_bench_usage_errors(cli: Cli) -> None:
    assert_one_error_line(cli("bench", "--mode", "consume"), 2, "--stream")
    assert_one_error_line(cli("bench", "--size", "4"), 2, "--no-verify")
    assert_one_error_line(cli("bench", "--size", "0", "--no-verify"), 2, "--size")
    assert_one_error_line(cli("bench", "--messages", "0"), 2, "at least 1")


def test_bench_without_its_extras_names_the_install(cli: Cli, tmp_path: Path) -> None:
    # A package named like the missing one that fails to import shadows the real one.
    for name in ("hdrh", "rich"):
        shadow = tmp_path / name
        shadow.mkdir(parents=True, exist_ok=True)
        (shadow / "__init__.py").write_text("raise ImportError('hidden for the test')\n")
    env = {**cli.env, "PYTHONPATH": str(tmp_path)}
    result = cli("bench", "--messages", "10", env=env)
    assert_one_error_line(result, 1, "pip install 'pyliftbridge[cli]'", "hdrhistogram")
    table = cli("streams", "list", env=env)
    assert_one_error_line(table, 1, "pip install 'pyliftbridge[cli]'", "rich")
    # What needs no table, histogram or progress line works without the extra.
    assert "__activity" in cli.ok("streams", "list", "--all", "--json", env=env).stdout


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["-m", "pyliftbridge", "serve"], id="pyliftbridge-serve"),
        pytest.param(["-m", "pyliftbridge.testing", "serve"], id="testing-serve"),
        pytest.param(
            ["-m", "pyliftbridge", "serve", "--nodes", "3"],
            id="serve-3-nodes",
            marks=pytest.mark.cluster,
        ),
    ],
)
def test_serve_until_ctrl_c(cli: Cli, command: list[str]) -> None:
    server = subprocess.Popen(
        [sys.executable, *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli.env,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline().decode()
        assert first.startswith("Liftbridge ready: "), first
        addresses = first.split(": ", 1)[1].strip().split(",")
        assert len(addresses) == (3 if "--nodes" in command else 1)
        view = json.loads(cli.ok("metadata", "--json", "--brokers", ",".join(addresses)).stdout)
        assert sorted(b["address"] for b in view["brokers"]) == sorted(addresses)
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, err
    assert b"Stopping." in out and b"Traceback" not in err
