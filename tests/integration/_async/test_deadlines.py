"""Every public call returns within its deadline, against a frozen (SIGSTOPped) server.

This file is the source of ``tests/integration/_sync/test_deadlines.py``
(``scripts/unasync.py``): every test here runs against both clients.

The clients keep the default timeout (10 s) and each call is given
``timeout=T`` (1 s): an internal step (a metadata refresh, a leader lookup, a
cursor partition lookup, a group join...) that used the client's default
instead of what is left of the call's own deadline would take 10 s and fail
the test. The calls of one client run concurrently, so the whole check costs
about one deadline per client; each is timed on its own. A warm client (its
metadata cached, its connections open) and a cold one (nothing cached, its
first connection made to the frozen server) are both checked, and both must
work again once the server continues.

Also here: the small fixes of the reliability issue (a paused partition's
metadata, two members creating a group at once, cursor offsets).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pyliftbridge import (
    AckPolicy,
    AsyncClient,
    InvalidArgumentError,
    KeyPartitioner,
    LiftbridgeError,
)
from pyliftbridge._async._backend import monotonic, spawn, wait_future

pytestmark = pytest.mark.integration

#: Deadline of every call made to the frozen server, and the allowed overrun.
T = 1.0
SLACK = 0.10
#: Figures of the last run, per flavour, for docs/reliability.md (printed with -s).
REPORT = {}


def freeze(server):
    """SIGSTOP the server and wait until every thread of it has stopped.

    The signal is delivered asynchronously: a request sent right after it may
    still be answered by a thread that has not stopped yet.
    """
    server.pause()
    tasks = Path(f"/proc/{server.node.pid}/task")
    give_up = time.monotonic() + 5
    while time.monotonic() < give_up:
        try:
            states = [
                (t / "stat").read_text().rsplit(")", 1)[1].split()[0] for t in tasks.iterdir()
            ]
        except OSError:  # a thread ended while being looked at; look again
            continue
        if all(state in "tT" for state in states):
            return
        time.sleep(0.01)
    raise AssertionError(f"{server} did not stop")


async def timed(results, label, call):
    """Run ``call()``; record (seconds taken, exception or None) under ``label``."""
    start = monotonic()
    outcome = None
    try:
        await call()
    except LiftbridgeError as exc:
        outcome = exc
    except Exception as exc:  # an untyped error fails the check below
        outcome = exc
    results[label] = (monotonic() - start, outcome)


async def run_concurrently(calls):
    """Run every ``(label, call)`` at once; return {label: (seconds, exception)}."""
    results = {}
    workers = [
        spawn(timed, results, label, call, name=f"deadline-{label}") for label, call in calls
    ]
    for worker in workers:
        await worker.join(30.0)
    return results


def calls_against(client, consumer, checkpointer, name, tag):
    """One call of each public kind, all with ``timeout=T``; harmless if the server runs them later."""

    async def publish_async_and_wait():
        future = await client.publish_async(f"{name}-pub", b"x", timeout=T)
        await wait_future(future)

    async def flush_with_pending():
        # The publish waits longer than the flush: only the flush's deadline can end it.
        await client.publish_async(f"{name}-pub", b"y", timeout=10 * T)
        await client.flush(timeout=T)

    async def subscribe():
        subscription = await client.subscribe(name, start_at="earliest", timeout=T)
        await subscription.close()

    async def subscribe_all():
        subscription = await client.subscribe_all(name, start_at="earliest", timeout=T)
        await subscription.close()

    async def activity():
        stream = await client.activity(timeout=T)
        await stream.close()

    return [
        ("fetch_metadata", lambda: client.fetch_metadata(timeout=T)),
        ("fetch_partition_metadata", lambda: client.fetch_partition_metadata(name, 1, timeout=T)),
        (
            "create_stream",
            lambda: client.create_stream(f"{name}-{tag}.s", f"{name}-{tag}", timeout=T),
        ),
        ("delete_stream", lambda: client.delete_stream(f"{name}-none", timeout=T)),
        ("pause_stream", lambda: client.pause_stream(f"{name}-none", timeout=T)),
        ("set_stream_readonly", lambda: client.set_stream_readonly(f"{name}-none", timeout=T)),
        ("publish", lambda: client.publish(f"{name}-pub", b"z", timeout=T)),
        (
            "publish (partitioner)",
            lambda: client.publish(
                f"{name}-pub", b"k", key=b"k", partitioner=KeyPartitioner(), timeout=T
            ),
        ),
        ("publish_async (its future)", publish_async_and_wait),
        ("flush", flush_with_pending),
        ("publish_to_subject", lambda: client.publish_to_subject(f"{name}-pub.s", b"w", timeout=T)),
        ("subscribe", subscribe),
        ("subscribe_all", subscribe_all),
        ("activity", activity),
        ("set_cursor", lambda: client.set_cursor(f"c-{tag}", name, 0, 3, timeout=T)),
        ("fetch_cursor", lambda: client.fetch_cursor("reader", name, 0, timeout=T)),
        ("consumer.subscribe (join)", lambda: consumer.subscribe([name], timeout=T)),
        ("consumer.checkpoint", lambda: checkpointer.checkpoint(timeout=T)),
    ]


def check_results(results, flavour):
    late = {k: round(v[0], 3) for k, v in results.items() if v[0] > T * (1 + SLACK)}
    assert not late, f"calls over the deadline of {T}s (+{SLACK:.0%}): {late}"
    untyped = {k: repr(v[1]) for k, v in results.items() if not isinstance(v[1], LiftbridgeError)}
    assert not untyped, f"calls without a typed error against a frozen server: {untyped}"
    REPORT[flavour] = {k: (round(v[0], 3), type(v[1]).__name__) for k, v in results.items()}
    for label, (seconds, error) in sorted(results.items()):
        print(f"\n{flavour:17} {label:28} {seconds:6.3f}s  {type(error).__name__}")


async def test_every_call_within_its_deadline_against_a_frozen_server(liftbridge, name):
    server = liftbridge
    async with AsyncClient(server.address) as admin:
        await admin.create_stream(f"{name}.s", name, partitions=2)
        await admin.create_stream(f"{name}-pub.s", f"{name}-pub")
        await admin.publish(name, b"before", partition=0, ack_policy=AckPolicy.ALL)
        await admin.set_cursor("reader", name, 0, 0)
    # Clients keep the default timeout (10 s): only the calls' own deadlines are short.
    warm = AsyncClient(server.address)
    cold = AsyncClient(server.address)
    try:
        await warm.fetch_metadata()
        await warm.publish(f"{name}-pub", b"warm-up")
        # A member with a position to store, for checkpoint(); no automatic checkpoints.
        checkpointer = warm.create_consumer(
            f"{name}-g0", auto_checkpoint=None, auto_offset="earliest"
        )
        await checkpointer.subscribe([name])
        assert (await checkpointer.get(timeout=10)).value == b"before"
        consumers = {
            "warm": warm.create_consumer(f"{name}-g1"),
            "cold": cold.create_consumer(f"{name}-g2"),
        }
        freeze(server)
        try:
            for flavour, client in (("warm", warm), ("cold", cold)):
                calls = calls_against(client, consumers[flavour], checkpointer, name, flavour)
                check_results(await run_concurrently(calls), f"{type(client).__name__}/{flavour}")
        finally:
            server.resume()
        # Both clients work again: nothing is left broken by the stall.
        for client in (warm, cold):
            metadata = await client.fetch_metadata([name], timeout=15)
            assert sorted(metadata.stream(name).partitions) == [0, 1]
            ack = await client.publish(name, b"after", partition=1, timeout=15)
            assert ack is not None and ack.partition == 1
            async with await client.subscribe(name, start_at="earliest", timeout=15) as sub:
                assert (await sub.__anext__()).value == b"before"
            assert await client.fetch_cursor("reader", name, 0, timeout=15) == 0
            info = await client.fetch_partition_metadata(name, 1, timeout=15)
            assert info.newest_offset >= 0
        await checkpointer.checkpoint(timeout=15)
        assert await warm.fetch_cursor(f"__group:{name}-g0", name, 0) == 0
    finally:
        for client in (warm, cold):
            await client.close()


# ------------------------------------------------------------ the small fixes


async def test_metadata_of_a_paused_partition_comes_at_once(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        await client.create_stream(f"{name}.s", name, partitions=2)
        await client.publish(name, b"m", partition=0)
        await client.pause_stream(name, partitions=[0])
        start = monotonic()
        info = await client.fetch_partition_metadata(name, 0, timeout=5)
        # The leader refuses until the partition resumes; the cluster metadata answers.
        assert monotonic() - start < 2.0
        assert info.paused and info.id == 0 and info.stream == name
        running = await client.fetch_partition_metadata(name, 1, timeout=5)
        assert not running.paused and running.leader is not None
        # A publish resumes it; then its leader answers. (Liftbridge v1.9.0
        # keeps reporting paused=True after a resume: the flag of the
        # partition's record is set by a pause and never cleared.)
        await client.publish(name, b"n", partition=0)
        start = monotonic()
        info = await client.fetch_partition_metadata(name, 0, timeout=5)
        assert monotonic() - start < 2.0
        assert info.newest_offset == 1 and info.leader is not None


async def test_members_creating_a_group_at_once_both_join(liftbridge, name):
    # The server checks that a group does not exist, then creates it through
    # Raft: of two joins that race, one is refused "consumer group already
    # exists". Several groups at once make the race likely.
    groups = 6
    async with AsyncClient(liftbridge.address) as client:
        await client.create_stream(f"{name}.s", name, partitions=2)
        members = [
            client.create_consumer(f"{name}-g{i}", consumer_id=f"m{j}")
            for i in range(groups)
            for j in range(2)
        ]
        errors = []

        async def join(member):
            try:
                await member.subscribe([name], timeout=15)
            except LiftbridgeError as exc:
                errors.append(exc)

        workers = [spawn(join, m, name="join") for m in members]
        for worker in workers:
            await worker.join(30)
        try:
            assert not errors, errors
        finally:
            for member in members:
                await member.close()


async def test_cursor_offsets(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        await client.create_stream(f"{name}.s", name)
        await client.set_cursor("c", name, 0, 5)
        assert await client.fetch_cursor("c", name, 0) == 5
        # -1 is what the server answers for "no position": setting it clears one.
        await client.set_cursor("c", name, 0, -1)
        assert await client.fetch_cursor("c", name, 0) == -1
    # Refused before anything is sent: nothing listens on port 9 (that would be UnavailableError).
    async with AsyncClient("127.0.0.1:9") as offline:
        for bad in (-5, -2, 2**63, "7", 1.5, True):
            with pytest.raises(InvalidArgumentError):
                await offline.set_cursor("c", name, 0, bad)
        with pytest.raises(InvalidArgumentError):
            await offline.set_cursor("c", name, -1, 0)
        with pytest.raises(InvalidArgumentError):
            await offline.fetch_cursor("", name, 0)
