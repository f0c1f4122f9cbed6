"""Failover under load: the partition leader killed and restarted while publishing and reading.

    python tests/failover/failover.py --kills 6 --every 10          # starts its own 3-node cluster
    python tests/failover/failover.py --kills 6 --every 10 --group  # readers: a consumer group of two
    python tests/failover/failover.py ... --gap-target 3.0           # also fail on a longer ack gap

A stream with replication factor 3 (two partitions) on a 3-node cluster. An
:class:`~pyliftbridge.AsyncClient` publishes numbered messages with
``AckPolicy.ALL``, pipelined (up to ``--inflight`` awaiting their ack),
round-robin over the partitions, from the start to the end. Readers run from
the start too: one subscription per partition, or (``--group``) a consumer
group of two members. Every ``--every`` seconds the leader of partition 0 is
killed (SIGKILL) and restarted ``--down`` seconds later.

At the end the whole stream is read back, and the run fails if an acked
message is missing or stored twice, if a reader missed an acked message, or
(subscriptions only) if a subscription did not deliver exactly the stored
messages of its partition in offset order. Unacked publishes (their fate is
unknown: ``AckTimeoutError``/``UnavailableError``) are counted, not failed:
they may or may not be stored. The *ack gap* of a kill is the time from the
kill to the first ack of a publish made after it; ``--gap-target`` turns it
into a pass/fail check (off by default: the publish path's failover speed is
tracked in docs/reliability.md).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from pyliftbridge import AckPolicy, AsyncClient, LiftbridgeError, RoundRobinPartitioner

PARTITIONS = 2


@dataclass
class Kill:
    node: int
    at: float
    restarted_at: float | None = None
    ack_gap: float | None = None


@dataclass
class FailoverReport:
    mode: str
    seconds: float = 0.0
    published: int = 0
    acked: int = 0
    unacked: dict[str, int] = field(default_factory=dict)
    stored: int = 0
    lost: list[int] = field(default_factory=list)
    duplicated: list[int] = field(default_factory=list)
    unacked_stored: int = 0
    delivered: int = 0
    missed_by_readers: list[int] = field(default_factory=list)
    order_errors: list[str] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    #: Seconds spent in each phase of the run.
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def ack_gaps(self) -> list[float | None]:
        return [k.ack_gap for k in self.kills]


class _Publisher:
    """Publishes numbered messages until stopped; records acks and failures."""

    def __init__(self, client: AsyncClient, stream: str, inflight: int, rate: float | None) -> None:
        self.client = client
        self.interval = 0.0 if rate is None else 1.0 / rate
        self.stream = stream
        self.slots = asyncio.Semaphore(inflight)
        self.acked: dict[int, tuple[int, int]] = {}  # number -> (partition, offset)
        self.failed: collections.Counter[str] = collections.Counter()
        self.ack_times: list[float] = []
        self.sent_at: dict[int, float] = {}
        self.sent = 0
        self.stopping = False
        self.pending: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        partitioner = RoundRobinPartitioner()
        next_at = time.monotonic()
        while not self.stopping:
            if self.interval:
                next_at += self.interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await self.slots.acquire()
            number = self.sent
            self.sent += 1
            self.sent_at[number] = time.monotonic()
            try:
                future = await self.client.publish_async(
                    self.stream,
                    b"%d" % number,
                    ack_policy=AckPolicy.ALL,
                    partitioner=partitioner,
                    timeout=5.0,
                )
            except LiftbridgeError as exc:
                self.failed[type(exc).__name__] += 1
                self.slots.release()
                await asyncio.sleep(0.05)  # no broker takes publishes right now
                continue
            task = asyncio.ensure_future(self._settle(number, future))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)

    async def _settle(self, number: int, future: Any) -> None:
        try:
            ack = await future
            self.acked[number] = (ack.partition, ack.offset)
            self.ack_times.append(time.monotonic())
        except LiftbridgeError as exc:
            self.failed[type(exc).__name__] += 1
        finally:
            self.slots.release()

    async def stop(self) -> None:
        self.stopping = True
        if self.pending:
            await asyncio.wait(set(self.pending), timeout=30)

    def first_ack_of_publish_after(self, moment: float) -> float | None:
        times = [t for n, t in zip(self.acked, self.ack_times) if self.sent_at.get(n, 0.0) > moment]
        return min(times) if times else None


async def _read_subscriptions(client: AsyncClient, stream: str, got: dict[int, list[Any]]) -> None:
    async def one(partition: int) -> None:
        async with await client.subscribe(stream, partition=partition, start_at="earliest") as sub:
            async for message in sub:
                got[partition].append(message)

    await asyncio.gather(*(one(p) for p in range(PARTITIONS)))


async def _read_group(client: AsyncClient, stream: str, got: dict[int, list[Any]]) -> None:
    members = [
        client.create_consumer(f"{stream}-group", auto_offset="earliest", auto_checkpoint=1.0)
        for _ in range(2)
    ]

    async def one(member: Any) -> None:
        await member.subscribe([stream])
        while True:
            try:
                message = await member.get(timeout=1.0)
            except TimeoutError:
                continue
            except LiftbridgeError:
                continue  # reported by the member and retried by it (a partition moving)
            got[message.partition].append(message)

    try:
        await asyncio.gather(*(one(m) for m in members))
    finally:
        for member in members:
            with contextlib.suppress(LiftbridgeError):
                await member.close()


async def run_failover(
    cluster: Any,
    stream: str,
    *,
    kills: int = 1,
    every: float = 10.0,
    down: float = 3.0,
    tail: float = 4.0,
    group: bool = False,
    inflight: int = 256,
    rate: float | None = None,
    gap_target: float | None = None,
) -> FailoverReport:
    """Run the scenario on a running :class:`~pyliftbridge.testing.LiftbridgeCluster`."""
    report = FailoverReport(mode="consumer group of two" if group else "subscriptions")
    addresses = cluster.addresses
    begin = time.monotonic()
    async with AsyncClient(addresses, timeout=15) as admin:
        await admin.create_stream(
            f"{stream}.subj", stream, replication_factor=3, partitions=PARTITIONS
        )
    got: dict[int, list[Any]] = {p: [] for p in range(PARTITIONS)}
    start = time.monotonic()
    report.phases["create stream"] = round(start - begin, 1)
    reader = AsyncClient(addresses, timeout=15, resubscribe_wait=120)
    writer = AsyncClient(addresses, timeout=15, max_inflight_publishes=inflight)
    async with reader, writer:
        read = _read_group if group else _read_subscriptions
        reading = asyncio.ensure_future(read(reader, stream, got))
        publisher = _Publisher(writer, stream, inflight, rate)
        publishing = asyncio.ensure_future(publisher.run())
        loop = asyncio.get_running_loop()
        try:
            for _ in range(kills):
                await asyncio.sleep(every - down)
                victim = await loop.run_in_executor(None, cluster.leader_of, stream, 0)
                kill = Kill(node=victim, at=time.monotonic())
                cluster.kill(victim)
                report.kills.append(kill)
                await asyncio.sleep(down)
                await loop.run_in_executor(None, lambda v=victim: cluster.restart(v))
                kill.restarted_at = time.monotonic()
            await asyncio.sleep(tail)
        finally:
            await publisher.stop()
            publishing.cancel()
        mark = time.monotonic()
        report.phases["load and kills"] = round(mark - start, 1)
        for kill in report.kills:
            first = publisher.first_ack_of_publish_after(kill.at)
            kill.ack_gap = None if first is None else round(first - kill.at, 3)
            kill.at = round(kill.at - start, 3)
            kill.restarted_at = (
                None if kill.restarted_at is None else round(kill.restarted_at - start, 3)
            )
        # What is stored: each partition read back to its newest offset, once
        # its leader has committed everything it holds.
        stored: dict[int, list[Any]] = {}
        for partition in range(PARTITIONS):
            give_up = time.monotonic() + 30
            while True:
                info = await reader.fetch_partition_metadata(stream, partition)
                if info.high_watermark == info.newest_offset or time.monotonic() > give_up:
                    break
                await asyncio.sleep(0.2)
            stored[partition] = []
            if info.newest_offset < 0:
                continue
            async with await reader.subscribe(
                stream, partition=partition, start_at="earliest", stop_at=info.high_watermark
            ) as sub:
                stored[partition] = [m async for m in sub]
        report.phases["read back"] = round(time.monotonic() - mark, 1)
        mark = time.monotonic()
        # The readers catch up with everything stored (at most 60 s).
        give_up = time.monotonic() + 60
        while time.monotonic() < give_up:
            have = {int(m.value) for v in got.values() for m in v}
            if {int(m.value) for v in stored.values() for m in v} <= have:
                break
            await asyncio.sleep(0.2)
        report.phases["readers catch up"] = round(time.monotonic() - mark, 1)
        mark = time.monotonic()
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
    report.phases["close"] = round(time.monotonic() - mark, 1)
    report.seconds = round(time.monotonic() - start, 1)
    _verify(report, publisher, stored, got, group)
    for kill in report.kills:
        if kill.ack_gap is None:
            report.failures.append(f"no publish was acked after the kill at {kill.at}s")
        elif gap_target is not None and kill.ack_gap > gap_target:
            report.failures.append(
                f"ack gap {kill.ack_gap}s after the kill at {kill.at}s > {gap_target}s"
            )
    return report


def _verify(
    report: FailoverReport,
    publisher: _Publisher,
    stored: dict[int, list[Any]],
    got: dict[int, list[Any]],
    group: bool,
) -> None:
    report.published = publisher.sent
    report.acked = len(publisher.acked)
    report.unacked = dict(publisher.failed)
    counts = collections.Counter(int(m.value) for v in stored.values() for m in v)
    report.stored = sum(counts.values())
    report.lost = sorted(n for n in publisher.acked if counts[n] == 0)
    report.duplicated = sorted(n for n, c in counts.items() if c > 1)
    report.unacked_stored = sum(1 for n in counts if n not in publisher.acked)
    delivered = {int(m.value) for v in got.values() for m in v}
    report.delivered = len(delivered)
    report.missed_by_readers = sorted(n for n in publisher.acked if n not in delivered)
    where: dict[int, list[tuple[int, int]]] = collections.defaultdict(list)
    for partition, messages in stored.items():
        for m in messages:
            where[int(m.value)].append((partition, m.offset))
    for n, place in publisher.acked.items():
        places = where.get(n, [])
        if places and places != [place]:
            report.order_errors.append(f"message {n} acked at {place}, stored at {places}")
    if not group:
        # A subscription delivers its partition's stored messages, in offset order, once each.
        for partition, messages in got.items():
            offsets = [m.offset for m in messages]
            expected = [m.offset for m in stored.get(partition, [])]
            if offsets != expected:
                at = next(
                    (i for i, (a, b) in enumerate(zip(offsets, expected)) if a != b),
                    min(len(offsets), len(expected)),
                )
                repeated = len(offsets) - len(set(offsets))
                report.order_errors.append(
                    f"partition {partition}: the subscription delivered {len(offsets)} messages "
                    f"({repeated} offsets repeated), {len(expected)} are stored; they differ from "
                    f"position {at}: delivered {offsets[at : at + 3]}, stored {expected[at : at + 3]}"
                )
    if report.lost:
        report.failures.append(f"{len(report.lost)} acked messages lost: {report.lost[:10]}")
    if report.duplicated:
        report.failures.append(
            f"{len(report.duplicated)} messages stored twice: {report.duplicated[:10]}"
        )
    if report.missed_by_readers:
        report.failures.append(
            f"readers missed {len(report.missed_by_readers)} acked messages: {report.missed_by_readers[:10]}"
        )
    if report.order_errors:
        report.failures.append("; ".join(report.order_errors[:5]))
    if report.acked == 0:
        report.failures.append("nothing was acked")


def format_report(report: FailoverReport) -> str:
    gaps = ", ".join("-" if g is None else f"{g:.2f}s" for g in report.ack_gaps)
    return "\n".join(
        [
            f"failover ({report.mode}): {report.seconds:.0f}s, {len(report.kills)} kill(s)",
            f"  published {report.published}, acked {report.acked}, unacked {sum(report.unacked.values())} "
            f"{report.unacked or ''}",
            f"  stored {report.stored} (unacked but stored {report.unacked_stored}); acked lost "
            f"{len(report.lost)}, stored twice {len(report.duplicated)}",
            f"  readers got {report.delivered} distinct messages; acked ones missed {len(report.missed_by_readers)}",
            f"  ack gap per kill (kill -> first ack of a publish made after it): {gaps}",
            f"  phases: {report.phases}",
            "  result: "
            + ("OK" if not report.failures else "FAILED: " + "; ".join(report.failures)),
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between kills")
    parser.add_argument("--down", type=float, default=3.0, help="seconds a killed node stays down")
    parser.add_argument("--group", action="store_true", help="read with a consumer group of two")
    parser.add_argument("--inflight", type=int, default=256)
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="publishes per second (default: as fast as acks allow)",
    )
    parser.add_argument("--gap-target", type=float, default=None, help="fail on a longer ack gap")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from pyliftbridge.testing import LiftbridgeCluster

    with LiftbridgeCluster(3, log_level="warn") as cluster:
        report = asyncio.run(
            run_failover(
                cluster,
                "failover",
                kills=args.kills,
                every=args.every,
                down=args.down,
                group=args.group,
                inflight=args.inflight,
                rate=args.rate,
                gap_target=args.gap_target,
            )
        )
    print(format_report(report))
    if args.json:
        print(json.dumps(asdict(report)))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
