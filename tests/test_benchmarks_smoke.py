"""The benchmarks still run and report what they promise.

A smoke test only: tiny sizes, on the interpreter running the tests. It makes
no assertion about speed; figures live in benchmarks/README.md.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

BENCH_FRAMING = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_framing.py"

FRAMING_KEYS = {
    "implementation",
    "python_version",
    "h2_version",
    "protobuf_version",
    "protobuf_backend",
    "messages",
    "rounds",
    "flush_every",
    "send_msgs_per_s",
    "send_floor_msgs_per_s",
    "send_ratio",
    "recv_msgs_per_s",
    "recv_floor_msgs_per_s",
    "recv_ratio",
    "recv_h2_path_msgs_per_s",
    "recv_h2_path_ratio",
}


def test_bench_framing_quick_json() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH_FRAMING), "--messages", "200", "--rounds", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    missing = FRAMING_KEYS - result.keys()
    assert not missing, missing
    assert result["messages"] == 200
    assert result["rounds"] == 1
    for key, value in result.items():
        if key.endswith(("_ratio", "_msgs_per_s")):
            assert isinstance(value, float), key
            assert value > 0 and math.isfinite(value), key


def test_bench_framing_table() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH_FRAMING), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "recv: GrpcConnection, fast path" in proc.stdout


def test_bench_publish_path_quick_json() -> None:
    script = BENCH_FRAMING.parent / "bench_publish_path.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--messages", "300", "--rounds", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(proc.stdout)
    assert result["messages"] == 300
    assert len(result["rounds_us_per_publish"]) == 1
    assert result["best_us_per_publish"] > 0
