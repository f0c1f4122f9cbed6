"""What every Python contender of compare.py shares: its arguments and its JSON result."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from typing import Any


def parse_args(modes: tuple[str, ...] = ("publish", "sync", "consume")) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--mode", choices=modes, default="publish")
    parser.add_argument("--client", choices=["sync", "async"], default="sync")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--ack-policy", default="leader", choices=["leader", "all", "none"])
    return parser.parse_args()


def percentiles_ms(latencies: list[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max of latencies in seconds, in milliseconds."""
    if not latencies:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "p99_9": 0.0, "max": 0.0}
    ordered = sorted(latencies)
    last = len(ordered) - 1

    def at(q: float) -> float:
        return ordered[int(q * last)] * 1000

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "p99_9": at(0.999), "max": at(1.0)}


def report(
    args: argparse.Namespace,
    client: str,
    seconds: float,
    cpu_seconds: float,
    latencies: list[float] | None = None,
    errors: int = 0,
) -> None:
    """Print the one JSON object compare.py reads (the keys of `pyliftbridge bench --json`)."""
    result: dict[str, Any] = {
        "mode": args.mode,
        "client": client,
        "implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "messages": args.messages,
        "message_size": args.size,
        "ack_policy": args.ack_policy,
        "window": args.window,
        "partitions": args.partitions,
        "duration": seconds,
        "cpu_seconds": cpu_seconds,
        "messages_per_second": args.messages / seconds,
        "mb_per_second": args.messages * args.size / seconds / 1e6,
        "latency_ms": percentiles_ms(latencies or []),
        "errors": errors,
    }
    sys.stdout.write(json.dumps(result) + "\n")
