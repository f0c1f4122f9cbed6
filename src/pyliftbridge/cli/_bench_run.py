"""The measured phases of ``bench``: publishing (blocking or asyncio) and consuming.

Each publisher is a thread (blocking client) or a task (asyncio client)
sharing one client. Pipelined publishers call ``publish_async`` and leave a
done-callback per message (one histogram record per ack); ``--sync``
publishers call ``publish`` and wait for each ack. The phase ends when every
ack is in (``flush``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from .. import AckPolicy, LiftbridgeError, Message
from ._measure import Meter, Sampler
from ._progress import ProgressLine
from ._workload import Workload

if TYPE_CHECKING:
    from .. import AsyncClient, Client

__all__ = ["Connect", "Plan", "Timing", "consume", "publish", "read_back", "settled_offsets"]


@dataclass
class Connect:
    """How to make a client for a phase, and which kind the phase uses."""

    blocking: Callable[[], Client]
    asyncio: Callable[[], AsyncClient]
    use_asyncio: bool


@dataclass
class Plan:
    """What to run."""

    stream: str
    workload: Workload
    messages: int | None
    seconds: float | None
    publishers: int
    ack_policy: AckPolicy
    one_at_a_time: bool
    flush_timeout: float


@dataclass
class Timing:
    """Wall and CPU time of a measured phase, and its sampled progress."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0
    sent: int = 0
    total_bytes: int = 0
    partitions: int | None = None
    rates: list[tuple[float, float]] = field(default_factory=list)


@contextmanager
def _measured(
    meter: Meter, label: str, plan_total: int | None, plan_seconds: float | None
) -> Iterator[Timing]:
    timing = Timing()
    with ProgressLine(label, total=plan_total, seconds=plan_seconds) as progress:
        sampler = Sampler(meter, progress.update)
        with sampler:
            cpu = time.process_time()
            wall = time.perf_counter()
            yield timing
            timing.seconds = time.perf_counter() - wall
            timing.cpu_seconds = time.process_time() - cpu
    timing.rates = list(sampler.rates())
    meter.fill_histogram()


def _shares(plan: Plan) -> list[int | None]:
    """Messages per publisher (None: until the deadline)."""
    if plan.messages is None:
        return [None] * plan.publishers
    base, extra = divmod(plan.messages, plan.publishers)
    return [base + (1 if pub < extra else 0) for pub in range(plan.publishers)]


def _publisher(
    c: Client, plan: Plan, meter: Meter, pub: int, count: int | None, deadline: float | None
) -> int:
    work = plan.workload
    stream, policy, partitioner = plan.stream, plan.ack_policy, work.partitioner
    send = c.publish if plan.one_at_a_time else c.publish_async
    clock, clock_ns = time.perf_counter, time.perf_counter_ns
    seq = 0
    while (count is None or seq < count) and (deadline is None or clock() < deadline):
        value, key, partition = work.value(pub, seq), work.key(pub, seq), work.partition(pub, seq)
        seq += 1
        sent = clock_ns()
        try:
            result = send(
                stream,
                value,
                key=key,
                partition=partition,
                partitioner=partitioner,
                ack_policy=policy,
            )
        except LiftbridgeError as exc:
            meter.done(sent, exc)
            continue
        if plan.one_at_a_time:
            meter.done(sent)
        else:
            result.add_done_callback(meter.callback(sent))  # type: ignore[union-attr]
    return seq


async def _async_publisher(
    c: AsyncClient, plan: Plan, meter: Meter, pub: int, count: int | None, deadline: float | None
) -> int:
    work = plan.workload
    stream, policy, partitioner = plan.stream, plan.ack_policy, work.partitioner
    clock, clock_ns = time.perf_counter, time.perf_counter_ns
    seq = 0
    while (count is None or seq < count) and (deadline is None or clock() < deadline):
        value, key, partition = work.value(pub, seq), work.key(pub, seq), work.partition(pub, seq)
        seq += 1
        sent = clock_ns()
        try:
            if plan.one_at_a_time:
                await c.publish(
                    stream,
                    value,
                    key=key,
                    partition=partition,
                    partitioner=partitioner,
                    ack_policy=policy,
                )
                meter.done(sent)
            else:
                future = await c.publish_async(
                    stream,
                    value,
                    key=key,
                    partition=partition,
                    partitioner=partitioner,
                    ack_policy=policy,
                )
                future.add_done_callback(meter.callback(sent))
        except LiftbridgeError as exc:
            meter.done(sent, exc)
    return seq


def publish(plan: Plan, meter: Meter, connect: Connect) -> Timing:
    """Run the publish phase."""
    if connect.use_asyncio:
        import asyncio  # only here: the blocking commands never load it

        return asyncio.run(_publish_async(plan, meter, connect.asyncio))
    shares = _shares(plan)
    with connect.blocking() as c:
        c.fetch_metadata([plan.stream])  # connect before the clock starts
        with _measured(meter, "publishing", plan.messages, plan.seconds) as timing:
            deadline = None if plan.seconds is None else time.perf_counter() + plan.seconds
            if plan.publishers == 1:
                timing.sent = _publisher(c, plan, meter, 0, shares[0], deadline)
            else:
                with ThreadPoolExecutor(plan.publishers) as pool:
                    futures = [
                        pool.submit(_publisher, c, plan, meter, pub, share, deadline)
                        for pub, share in enumerate(shares)
                    ]
                    timing.sent = sum(f.result() for f in futures)
            c.flush(timeout=plan.flush_timeout)
    timing.total_bytes = timing.sent * plan.workload.size
    return timing


async def _publish_async(
    plan: Plan, meter: Meter, asyncio_client: Callable[[], AsyncClient]
) -> Timing:
    shares = _shares(plan)
    async with asyncio_client() as c:
        await c.fetch_metadata([plan.stream])
        with _measured(meter, "publishing", plan.messages, plan.seconds) as timing:
            deadline = None if plan.seconds is None else time.perf_counter() + plan.seconds
            import asyncio

            sent = await asyncio.gather(
                *(
                    _async_publisher(c, plan, meter, pub, share, deadline)
                    for pub, share in enumerate(shares)
                )
            )
            timing.sent = sum(sent)
            await c.flush(timeout=plan.flush_timeout)
    timing.total_bytes = timing.sent * plan.workload.size
    return timing


def consume(stream: str, messages: int, meter: Meter, connect: Connect) -> Timing:
    """Read ``messages`` messages from the start of every partition of ``stream``."""
    if connect.use_asyncio:
        import asyncio

        return asyncio.run(_consume_async(stream, messages, meter, connect.asyncio))
    with connect.blocking() as c:
        partitions = c.fetch_metadata([stream]).partition_count(stream)
        with _measured(meter, "consuming", messages, None) as timing:
            subscription = c.subscribe_all(stream, start_at="earliest", stop_at="latest")
            with subscription:
                for message in subscription:
                    timing.total_bytes += len(message.value)
                    meter.count_one()
                    if meter.done_count >= messages:
                        break
    timing.partitions = partitions
    return timing


async def _consume_async(
    stream: str, messages: int, meter: Meter, asyncio_client: Callable[[], AsyncClient]
) -> Timing:
    async with asyncio_client() as c:
        partitions = (await c.fetch_metadata([stream])).partition_count(stream)
        with _measured(meter, "consuming", messages, None) as timing:
            subscription = await c.subscribe_all(stream, start_at="earliest", stop_at="latest")
            async with subscription:
                async for message in subscription:
                    timing.total_bytes += len(message.value)
                    meter.count_one()
                    if meter.done_count >= messages:
                        break
    timing.partitions = partitions
    return timing


def settled_offsets(
    c: Client, stream: str, *, wait_for_stable: bool, timeout: float = 10.0
) -> dict[int, int]:
    """Newest offset of each partition, once committed (and, if asked, no longer moving).

    After acked publishes the high watermark may still trail the leader's
    newest offset for a moment (replication); after unacked ones
    (``AckPolicy.NONE``) messages may still be arriving.
    """
    deadline = time.monotonic() + timeout
    previous: dict[int, int] | None = None
    while True:
        partitions = sorted(c.fetch_metadata([stream]).stream(stream).partitions)
        infos = [c.fetch_partition_metadata(stream, pid) for pid in partitions]
        newest = {p.id: p.newest_offset for p in infos}
        committed = all(p.high_watermark == p.newest_offset for p in infos)
        stable = not wait_for_stable or newest == previous
        if (committed and stable) or time.monotonic() >= deadline:
            return newest
        previous = newest
        time.sleep(0.2)


def read_back(c: Client, stream: str, after: dict[int, int]) -> Iterator[Message]:
    """Every message of ``stream`` past the offsets ``after`` (per partition), in order."""
    now = settled_offsets(c, stream, wait_for_stable=False)
    for pid, last in sorted(after.items()):
        if now.get(pid, -1) <= last:
            continue
        with c.subscribe(stream, partition=pid, start_at=last + 1, stop_at="latest") as messages:
            yield from messages
