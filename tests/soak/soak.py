"""Soak: both clients busy at once for a while; threads, tasks, fds and RSS must stay flat.

    python tests/soak/soak.py --seconds 600                 # starts its own Liftbridge
    python tests/soak/soak.py --seconds 600 --address HOST:PORT --json

For each flavour (the blocking ``Client`` on threads, the ``AsyncClient`` on
the event loop of the main thread), all at the same time:

* a long-lived publisher sends numbered messages (``publish_async`` in
  batches of 50, then ``flush``) to a stream of its own, acks LEADER;
* a long-lived subscriber reads that stream from the start and checks that
  every number comes once and in order;
* a churn loop opens a new client, fetches metadata, subscribes at
  ``latest`` and takes one message, closes the subscription, every fifth
  round also joins a consumer group and takes a message, then closes the
  client.

Every 2 s the process's threads, asyncio tasks, open file descriptors and
RSS are sampled. The run fails when, between the first window after the
warm-up and the last window (the lowest value of a fifth of the run each), threads
grow by more than 2, tasks by more than 3, fds by more than 4 or RSS by more
than ``--rss-growth-mib``; when a message is lost, repeated or out of order;
or when a worker fails.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any

from pyliftbridge import AckPolicy, AsyncClient, Client

BATCH = 50
#: Published once the publishers have stopped: the subscribers end there.
END = b"end"


@dataclass
class Sample:
    at: float
    threads: int
    tasks: int
    fds: int
    rss_kib: int


@dataclass
class Flavour:
    published: int = 0
    consumed: int = 0
    cycles: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class Report:
    seconds: float
    implementation: str
    flavours: dict[str, Flavour]
    samples: list[Sample]
    growth: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _sample(loop: asyncio.AbstractEventLoop, start: float) -> Sample:
    # A full collection first, so that RSS follows what is alive rather than
    # when the collector last ran (PyPy's heap grows far ahead of its needs).
    gc.collect()
    return Sample(
        at=round(time.monotonic() - start, 1),
        threads=threading.active_count(),
        tasks=len(asyncio.all_tasks(loop)),
        fds=len(os.listdir("/proc/self/fd")),
        rss_kib=_rss_kib(),
    )


def _check_value(stats: Flavour, expected: int, value: bytes) -> int:
    """Check the next number read; returns the one expected after it."""
    number = int(value)
    if number != expected:
        stats.errors.append(f"subscriber expected message {expected}, got {number}")
    if number >= 0:
        stats.consumed += 1
    return number + 1


# ------------------------------------------------------------- blocking flavour


def sync_publisher(address: str, stream: str, stop: threading.Event, stats: Flavour) -> None:
    with Client(address) as client:
        while not stop.is_set():
            futures = [
                client.publish_async(stream, b"%d" % (stats.published + i)) for i in range(BATCH)
            ]
            client.flush(timeout=30)
            for future in futures:
                future.result(timeout=30)
            stats.published += BATCH


def sync_subscriber(address: str, stream: str, stop: threading.Event, stats: Flavour) -> None:
    expected = -1
    with Client(address) as client, client.subscribe(stream, start_at="earliest") as sub:
        for message in sub:
            if message.value == END:
                return
            expected = _check_value(stats, expected, message.value)


def sync_churn(address: str, stream: str, stop: threading.Event, stats: Flavour) -> None:
    while not stop.is_set():
        with Client(address) as client:
            client.fetch_metadata([stream])
            with client.subscribe(stream, start_at="latest") as sub:
                next(sub)
            if stats.cycles % 5 == 0:
                with client.create_consumer(f"{stream}-group", auto_offset="latest") as consumer:
                    consumer.subscribe([stream])
                    consumer.get(timeout=10)
        stats.cycles += 1


# -------------------------------------------------------------- asyncio flavour


async def async_publisher(address: str, stream: str, stop: threading.Event, stats: Flavour) -> None:
    async with AsyncClient(address) as client:
        while not stop.is_set():
            futures = [
                await client.publish_async(stream, b"%d" % (stats.published + i))
                for i in range(BATCH)
            ]
            await client.flush(timeout=30)
            for future in futures:
                await future
            stats.published += BATCH


async def async_subscriber(
    address: str, stream: str, stop: threading.Event, stats: Flavour
) -> None:
    expected = -1
    async with AsyncClient(address) as client:
        async with await client.subscribe(stream, start_at="earliest") as sub:
            async for message in sub:
                if message.value == END:
                    return
                expected = _check_value(stats, expected, message.value)


async def async_churn(address: str, stream: str, stop: threading.Event, stats: Flavour) -> None:
    while not stop.is_set():
        async with AsyncClient(address) as client:
            await client.fetch_metadata([stream])
            async with await client.subscribe(stream, start_at="latest") as sub:
                await sub.__anext__()
            if stats.cycles % 5 == 0:
                async with client.create_consumer(
                    f"{stream}-group", auto_offset="latest"
                ) as consumer:
                    await consumer.subscribe([stream])
                    await consumer.get(timeout=10)
        stats.cycles += 1


# ---------------------------------------------------------------------- driver


def _where(exc: BaseException) -> str:
    """`` at <line of this file>``: which call of a worker failed."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == __file__]
    return f" at `{frames[-1].line}`" if frames else ""


def _floor(samples: list[Sample], name: str) -> float:
    # The lowest value of a window: what is left between the churn loop's
    # short-lived clients (their worker threads and tasks come and go), so a
    # leak raises it and a transient peak does not.
    return float(min(getattr(s, name) for s in samples))


async def _soak(address: str, seconds: float, prefix: str, rss_growth_mib: float) -> Report:
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    flavours = {"sync": Flavour(), "async": Flavour()}
    streams = {name: f"{prefix}-{name}" for name in flavours}
    async with AsyncClient(address) as admin:
        for stream in streams.values():
            await admin.create_stream(f"{stream}.subj", stream)
            await admin.publish(stream, b"-1", ack_policy=AckPolicy.LEADER)  # never empty

    def guarded(fn: Any) -> Any:
        def run(*args: Any) -> None:
            try:
                fn(*args)
            except Exception as exc:
                flavours["sync"].errors.append(f"{fn.__name__}{_where(exc)}: {exc!r}")

        return run

    threads = [
        threading.Thread(
            target=guarded(fn), args=(address, streams["sync"], stop, flavours["sync"]), daemon=True
        )
        for fn in (sync_publisher, sync_subscriber, sync_churn)
    ]

    async def guarded_async(fn: Any) -> None:
        try:
            await fn(address, streams["async"], stop, flavours["async"])
        except Exception as exc:
            flavours["async"].errors.append(f"{fn.__name__}{_where(exc)}: {exc!r}")

    start = time.monotonic()
    for thread in threads:
        thread.start()
    tasks = [
        asyncio.ensure_future(guarded_async(fn))
        for fn in (async_publisher, async_subscriber, async_churn)
    ]
    samples = [_sample(loop, start)]
    while time.monotonic() - start < seconds:
        await asyncio.sleep(2.0)
        samples.append(_sample(loop, start))
    stop.set()
    # Publishers and churn finish their round; then the end marker lets the
    # subscribers finish once they have read everything.
    await asyncio.wait({tasks[0], tasks[2]}, timeout=60)
    for thread in (threads[0], threads[2]):
        await loop.run_in_executor(None, thread.join, 60)
    async with AsyncClient(address) as admin:
        for stream in streams.values():
            await admin.publish(stream, END)
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    await loop.run_in_executor(None, threads[1].join, 60)
    report = Report(
        seconds=round(time.monotonic() - start, 1),
        implementation=sys.implementation.name,
        flavours=flavours,
        samples=samples,
    )
    window = max(1, len(samples) // 5)
    first = samples[window : 2 * window]  # the first window after the warm-up one
    last = samples[-window:]
    limits = {"threads": 2, "tasks": 3, "fds": 4, "rss_kib": rss_growth_mib * 1024}
    for name, limit in limits.items():
        growth = _floor(last, name) - _floor(first, name)
        report.growth[name] = growth
        if growth > limit:
            report.failures.append(f"{name} grew by {growth:g} (limit {limit:g})")
    for name, stats in flavours.items():
        if stats.errors:
            report.failures.append(f"{name}: {stats.errors[:3]}")
        if stats.consumed != stats.published:
            report.failures.append(
                f"{name}: published {stats.published}, subscriber read {stats.consumed}"
            )
        if stats.cycles < 2:
            report.failures.append(f"{name}: only {stats.cycles} churn cycles")
    return report


def run_soak(
    address: str, seconds: float, *, prefix: str = "soak", rss_growth_mib: float | None = None
) -> Report:
    """Run the soak against ``address``; the report lists any failure."""
    if rss_growth_mib is None:
        # PyPy's heap grows in big steps and settles late.
        rss_growth_mib = 24.0 if sys.implementation.name == "cpython" else 96.0
    return asyncio.run(_soak(address, seconds, prefix, rss_growth_mib))


def format_report(report: Report) -> str:
    lines = [f"soak: {report.seconds:.0f}s on {report.implementation}"]
    for name, stats in report.flavours.items():
        lines.append(
            f"  {name:5}: published {stats.published}, read in order {stats.consumed}, "
            f"churn cycles {stats.cycles}, errors {len(stats.errors)}"
        )
    first, last = (
        report.samples[1] if len(report.samples) > 1 else report.samples[0],
        report.samples[-1],
    )
    for label, s in (("start", report.samples[0]), ("after 2 s", first), ("end", last)):
        lines.append(
            f"  {label:9}: threads {s.threads}, tasks {s.tasks}, fds {s.fds}, RSS {s.rss_kib / 1024:.1f} MiB"
        )
    lines.append(
        "  growth (lowest of last fifth - lowest of second fifth): "
        + ", ".join(f"{k} {v:+g}" for k, v in report.growth.items())
    )
    lines.append(
        "  result: " + ("OK" if not report.failures else "FAILED: " + "; ".join(report.failures))
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--address", help="a running Liftbridge (default: start one)")
    parser.add_argument("--rss-growth-mib", type=float, default=None)
    parser.add_argument("--json", action="store_true", help="also print the report as JSON")
    args = parser.parse_args()
    if args.address:
        report = run_soak(args.address, args.seconds, rss_growth_mib=args.rss_growth_mib)
    else:
        from pyliftbridge.testing import LiftbridgeServer

        with LiftbridgeServer(log_level="warn") as server:
            report = run_soak(server.address, args.seconds, rss_growth_mib=args.rss_growth_mib)
    print(format_report(report))
    if args.json:
        print(json.dumps(asdict(report)))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
