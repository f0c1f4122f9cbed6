"""The figures of a ``bench`` run: one dict, printed as text, JSON, or a CSV row."""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
from typing import Any

from .._version import __version__
from ._bench_run import Timing
from ._measure import PERCENTILES, LatencyHistogram, Meter

__all__ = ["print_text", "report", "write_csv", "write_json"]

_MIB = 1024.0 * 1024.0
_LATENCY_KEYS = ("min", "mean", *(name for name, _ in PERCENTILES), "max")


def report(
    args: argparse.Namespace,
    timing: Timing,
    meter: Meter,
    histogram: LatencyHistogram | None,
    *,
    partitions: int | None,
    stream: str,
) -> dict[str, Any]:
    """The result of a run, with the keys promised by ``bench --json``."""
    seconds = timing.seconds
    done = meter.done_count
    publish = args.mode == "publish"
    messages = timing.sent if publish else done
    total_bytes = timing.total_bytes
    return {
        "mode": args.mode,
        "client": args.client,
        "sync": bool(args.sync) if publish else None,
        "implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "pyliftbridge_version": __version__,
        "stream": stream,
        "messages": messages,
        "message_size": round(total_bytes / messages) if messages else args.size,
        "ack_policy": args.ack_policy.name.lower() if publish else None,
        "window": args.window if publish else None,
        "publishers": args.publishers if publish else None,
        "partitions": partitions,
        "key_partitioner": bool(args.key_partitioner) if publish else None,
        "keys": args.keys if publish and args.key_partitioner else None,
        "duration": seconds,
        "total_bytes": total_bytes,
        "messages_per_second": done / seconds if seconds > 0 else 0.0,
        "mb_per_second": total_bytes / seconds / _MIB if seconds > 0 else 0.0,
        "cpu_seconds": timing.cpu_seconds,
        "cpu_us_per_message": timing.cpu_seconds * 1e6 / messages if messages else None,
        "latency_ms": None if histogram is None else histogram.summary_ms(),
        "errors": meter.errors,
        "first_error": None if meter.first_error is None else _error_text(meter.first_error),
        "lost": 0 if not publish else None,
        "verified": None,
        "read_back": None,
    }


def _error_text(error: BaseException) -> str:
    return f"{error} ({type(error).__name__})"


def write_json(result: dict[str, Any]) -> None:
    """One JSON object, one line, on stdout."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def _flat(result: dict[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in result.items() if k != "latency_ms"}
    latency = result.get("latency_ms") or {}
    for key in _LATENCY_KEYS:
        row[f"latency_{key}_ms"] = latency.get(key)
    return row


def write_csv(path: str, result: dict[str, Any]) -> None:
    """Append the result as one row to ``path`` (with a header row when the file is new)."""
    row = _flat(result)
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def print_text(result: dict[str, Any]) -> None:
    """A short human-readable summary on stdout."""
    r = result
    lines = [f"=== pyliftbridge {r['mode']} benchmark ==="]
    how = f"{r['client']} client"
    if r["mode"] == "publish":
        how += ", one at a time" if r["sync"] else f", window {r['window']}"
        how += f", {r['publishers']} publisher(s)"
    lines.append(f"Client:       {how} on {r['implementation']} {r['python_version']}")
    what = f"{r['messages']:,} x {r['message_size']} B on {r['stream']}"
    if r["partitions"] is not None:
        what += f" ({r['partitions']} partition(s)"
        what += f", keyed over {r['keys']} keys)" if r["key_partitioner"] else ")"
    if r["ack_policy"] is not None:
        what += f", ack policy {r['ack_policy']}"
    lines.append(f"Messages:     {what}")
    lines.append(
        f"Throughput:   {r['messages_per_second']:,.0f} msg/s ({r['mb_per_second']:.2f} MiB/s) "
        f"over {r['duration']:.3f} s"
    )
    if r["cpu_us_per_message"] is not None:
        lines.append(
            f"Client CPU:   {r['cpu_seconds']:.3f} s ({r['cpu_us_per_message']:.1f} us/msg)"
        )
    latency = r["latency_ms"]
    if latency:
        lines.append(
            "Ack latency:  "
            + ", ".join(
                f"{name.replace('_', '.')} {latency[name]:.2f}"
                for name in ("p50", "p90", "p99", "p99_9", "max")
            )
            + " ms"
        )
    if r["verified"]:
        lines.append(f"Read back:    {r['read_back']:,} messages verified, {r['lost']} lost")
    elif r["mode"] == "publish":
        lines.append("Read back:    skipped (--no-verify)")
    lines.append(f"Errors:       {r['errors']}")
    sys.stdout.write("\n".join(lines) + "\n")
