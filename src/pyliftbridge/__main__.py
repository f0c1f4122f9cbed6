"""``pyliftbridge`` command line: a publish-throughput benchmark and a demo.

    pyliftbridge bench [--brokers HOST:PORT,...] [--messages N] [--size BYTES] ...
    pyliftbridge demo

Without ``--brokers`` a local single-node Liftbridge is started for the run
(``pyliftbridge.testing``; it needs the ``liftbridge`` binary or Go to build
it). Messages are published pipelined through ``publish_async`` with a
bounded window, every ack is awaited, and then everything is read back and
checked (count, order, content) before any figure is reported: a benchmark
that loses messages reports an error, not a number.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from ._version import __version__
from .errors import LiftbridgeError
from .models import AckPolicy

__all__ = ["main"]

log = logging.getLogger("pyliftbridge")


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


@contextlib.contextmanager
def _brokers(arg: str | None) -> Iterator[list[str]]:
    if arg:
        yield [a.strip() for a in arg.split(",") if a.strip()]
        return
    from .testing import LiftbridgeServer

    _say("no --brokers given: starting a local Liftbridge server ...")
    with LiftbridgeServer() as server:
        _say(f"local Liftbridge listening on {server.address}")
        yield [server.address]


def _say(text: str) -> None:
    # The CLI's own progress lines go to stderr so --json output stays clean.
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _payload(size: int, i: int) -> bytes:
    head = b"%012d:" % i
    return (head + os.urandom(max(0, size - len(head)) // 2).hex().encode())[:size].ljust(
        size, b"."
    )


def _verify(args: argparse.Namespace, values: list[bytes], message: Any, index: int) -> None:
    # With AckPolicy.NONE the server may drop messages (at most once), so only
    # content is checked; otherwise offsets must be exactly 0, 1, 2, ...
    expected = values[index] if args.ack_policy != "none" else message.value
    if message.value != expected or (args.ack_policy != "none" and message.offset != index):
        raise LiftbridgeError(f"message at offset {message.offset} came back wrong")
    if message.value[:12] != b"%012d" % int(message.value[:12]):
        raise LiftbridgeError(f"message at offset {message.offset} is not one we sent")


def _run_sync(args: argparse.Namespace, brokers: list[str], stream: str) -> dict[str, Any]:
    from . import Client

    policy = AckPolicy[args.ack_policy.upper()]
    values = [_payload(args.size, i) for i in range(args.messages)]
    latencies: list[float] = []
    lock = threading.Lock()
    errors = 0
    with Client(
        brokers, max_inflight_publishes=args.window, ack_timeout=args.ack_timeout
    ) as client:
        client.create_stream(f"{stream}.subject", stream, partitions=1)
        started = time.perf_counter()
        for i, value in enumerate(values):
            sent = time.perf_counter()
            future = client.publish_async(stream, value, key=b"key-%d" % i, ack_policy=policy)

            def done(f: Any, sent: float = sent) -> None:
                nonlocal errors
                with lock:
                    if f.exception() is not None:
                        errors += 1
                    latencies.append(time.perf_counter() - sent)

            future.add_done_callback(done)
        client.flush(timeout=args.ack_timeout + 30)
        publish_seconds = time.perf_counter() - started
        started = time.perf_counter()
        received = 0
        with client.subscribe(stream, start_at="earliest", stop_at="latest") as subscription:
            for message in subscription:
                _verify(args, values, message, received)
                received += 1
        consume_seconds = time.perf_counter() - started
        client.delete_stream(stream)
    return _report(args, publish_seconds, consume_seconds, received, latencies, errors, "sync")


async def _run_async(args: argparse.Namespace, brokers: list[str], stream: str) -> dict[str, Any]:
    from . import AsyncClient

    policy = AckPolicy[args.ack_policy.upper()]
    values = [_payload(args.size, i) for i in range(args.messages)]
    latencies: list[float] = []
    errors = 0
    async with AsyncClient(
        brokers, max_inflight_publishes=args.window, ack_timeout=args.ack_timeout
    ) as client:
        await client.create_stream(f"{stream}.subject", stream, partitions=1)
        started = time.perf_counter()
        for i, value in enumerate(values):
            sent = time.perf_counter()
            future = await client.publish_async(stream, value, key=b"key-%d" % i, ack_policy=policy)

            def done(f: Any, sent: float = sent) -> None:
                nonlocal errors
                if f.exception() is not None:
                    errors += 1
                latencies.append(time.perf_counter() - sent)

            future.add_done_callback(done)
        await client.flush(timeout=args.ack_timeout + 30)
        publish_seconds = time.perf_counter() - started
        started = time.perf_counter()
        received = 0
        async with await client.subscribe(
            stream, start_at="earliest", stop_at="latest"
        ) as subscription:
            async for message in subscription:
                _verify(args, values, message, received)
                received += 1
        consume_seconds = time.perf_counter() - started
        await client.delete_stream(stream)
    return _report(args, publish_seconds, consume_seconds, received, latencies, errors, "async")


def _report(
    args: argparse.Namespace,
    publish_seconds: float,
    consume_seconds: float,
    received: int,
    latencies: list[float],
    errors: int,
    client: str,
) -> dict[str, Any]:
    if received != args.messages and args.ack_policy != "none":
        raise LiftbridgeError(f"published {args.messages} messages but read back {received}")
    ordered = sorted(latencies)
    total_bytes = args.messages * args.size
    return {
        "client": client,
        "implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "pyliftbridge_version": __version__,
        "messages": args.messages,
        "message_size": args.size,
        "ack_policy": args.ack_policy,
        "window": args.window,
        "duration": publish_seconds,
        "total_bytes": total_bytes,
        "messages_per_second": args.messages / publish_seconds,
        "mb_per_second": total_bytes / publish_seconds / 1024 / 1024,
        "latency_min": ordered[0] if ordered else 0.0,
        "latency_mean": statistics.fmean(ordered) if ordered else 0.0,
        "latency_p50": _percentile(ordered, 0.50),
        "latency_p95": _percentile(ordered, 0.95),
        "latency_p99": _percentile(ordered, 0.99),
        "latency_p999": _percentile(ordered, 0.999),
        "latency_max": ordered[-1] if ordered else 0.0,
        "consume_messages_per_second": received / consume_seconds if consume_seconds else 0.0,
        "read_back": received,
        "lost": args.messages - received,
        "errors": errors,
    }


def _print_text(result: dict[str, Any]) -> None:
    ms = 1000.0
    lines = [
        "=== pyliftbridge publish benchmark ===",
        f"Client:         {result['client']} on {result['implementation']} "
        f"{result['python_version']}",
        f"Messages:       {result['messages']:,} x {result['message_size']} B, "
        f"ack policy {result['ack_policy']}, window {result['window']}",
        f"Duration:       {result['duration']:.3f} s",
        f"Throughput:     {result['messages_per_second']:,.0f} msgs/s "
        f"({result['mb_per_second']:.2f} MB/s)",
        "Ack latency:    "
        f"p50 {result['latency_p50'] * ms:.2f} ms, p95 {result['latency_p95'] * ms:.2f} ms, "
        f"p99 {result['latency_p99'] * ms:.2f} ms, max {result['latency_max'] * ms:.2f} ms",
        f"Read back:      {result['read_back']:,} messages verified ({result['lost']} lost), "
        f"{result['consume_messages_per_second']:,.0f} msgs/s",
        f"Errors:         {result['errors']}",
    ]
    sys.stdout.write("\n".join(lines) + "\n")


def _bench(args: argparse.Namespace) -> int:
    stream = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        with _brokers(args.brokers) as brokers:
            if args.client == "async":
                result = asyncio.run(_run_async(args, brokers, stream))
            else:
                result = _run_sync(args, brokers, stream)
    except LiftbridgeError as exc:
        _say(f"pyliftbridge bench failed: {type(exc).__name__}: {exc}")
        return 1
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        _print_text(result)
    return 1 if result["errors"] else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyliftbridge", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"pyliftbridge {__version__}")
    sub = parser.add_subparsers(dest="command")
    for name, default_messages, text in (
        ("bench", 100_000, "measure publish throughput (and verify every message)"),
        ("demo", 20_000, "start a local Liftbridge (unless --brokers), publish, consume, report"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--brokers", help="HOST:PORT[,HOST:PORT...]; default: start a local server")
        p.add_argument("--messages", "-n", type=int, default=default_messages)
        p.add_argument("--size", type=int, default=256, help="message size in bytes")
        p.add_argument("--ack-policy", choices=["leader", "all", "none"], default="leader")
        p.add_argument("--window", type=int, default=1024, help="publishes in flight at most")
        p.add_argument("--client", choices=["sync", "async"], default="sync")
        p.add_argument("--ack-timeout", type=float, default=10.0)
        p.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pyliftbridge`` command."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        args = _parser().parse_args(["demo", *(argv or [])])
    if args.messages < 1 or args.size < 16 or args.window < 1:
        _say("--messages and --window must be >= 1 and --size >= 16")
        return 2
    return _bench(args)


if __name__ == "__main__":
    sys.exit(main())
