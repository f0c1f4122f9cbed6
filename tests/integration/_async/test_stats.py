"""``client.stats()`` against a real Liftbridge server: the counters match what was done.

This file is the source of ``tests/integration/_sync/test_stats.py``
(``scripts/unasync.py``): every test here runs against both clients.
"""

from __future__ import annotations

import pytest

from pyliftbridge import (
    AckPolicy,
    AsyncClient,
    ClientStats,
    LiftbridgeError,
    NoSuchPartitionError,
    NoSuchStreamError,
    RoundRobinPartitioner,
)
from pyliftbridge._async._backend import monotonic, sleep, wait_future

pytestmark = pytest.mark.integration


async def take(subscription, count):
    """The next ``count`` messages of a subscription."""
    return [await subscription.__anext__() for _ in range(count)]


async def test_counters_match_what_was_done(liftbridge, name):
    async with AsyncClient(liftbridge.address, ack_timeout=5.0) as client:
        await client.create_stream(f"{name}.subj", name)
        sub = await client.subscribe(name, start_at="earliest")
        for i in range(20):
            await client.publish(name, b"waited-%d" % i)
        futures = [await client.publish_async(name, b"piped-%d" % i) for i in range(30)]
        await client.flush()
        for future in futures:
            assert (await wait_future(future, 0)) is not None
        await client.publish(name, b"no-ack", ack_policy=AckPolicy.NONE)
        # A stream that does not exist: refused by the server (after the
        # client's resends), or found missing before anything is sent.
        with pytest.raises(NoSuchPartitionError):
            await client.publish(f"{name}-missing", b"x", partition=0, timeout=1.0)
        with pytest.raises(NoSuchStreamError):
            await client.publish(f"{name}-missing", b"x", partitioner=RoundRobinPartitioner())
        received = await take(sub, 51)
        assert len(received) == 51

        stats = client.stats()
        assert isinstance(stats, ClientStats)
        publishes = stats.publishes
        assert publishes.sent == 20 + 30 + 1 + 1
        assert publishes.sent_without_ack == 1
        assert publishes.acked == 50
        assert dict(publishes.failed) == {"NoSuchPartitionError": 1, "NoSuchStreamError": 1}
        assert publishes.failed_total == 2
        assert publishes.resent >= 1
        assert publishes.in_flight == 0
        latency = publishes.ack_latency
        assert latency.count == 50
        assert latency.min <= latency.p50 <= latency.p90 <= latency.p99 <= latency.max
        assert latency.max.total_seconds() < 5.0

        assert stats.active_subscriptions == 1
        (only,) = stats.subscriptions
        assert (only.stream, only.partition, only.messages_received) == (name, 0, 51)
        assert stats.messages_consumed == 51
        assert stats.resubscribes == 0
        assert stats.rpcs["CreateStream"] == {"OK": 1}
        assert stats.rpcs["Subscribe"] == {"OK": 1}
        assert stats.rpcs["PublishAsync"]["OK"] >= 1
        assert stats.metadata_refreshes >= 1  # the partitioner's lookup
        (broker,) = stats.brokers
        assert broker.address == liftbridge.address
        assert broker.connections_opened == 1
        assert broker.connections_lost == 0
        # Requests: CreateStream, Subscribe, metadata, 52 publishes and 1 + resends.
        assert broker.messages_sent >= 3 + 52 + 1 + publishes.resent
        # Acks (50, the refusals) and the 51 messages plus the handshake.
        assert broker.messages_received >= 50 + 52
        payload = sum(len(m.value) for m in received)
        assert broker.bytes_sent > payload
        assert broker.bytes_received > payload
        assert stats.bytes_sent == broker.bytes_sent
        assert stats.uptime.total_seconds() > 0

        await sub.close()
        after = client.stats()
        assert after.active_subscriptions == 0
        assert after.messages_consumed == 51
        # Snapshots are immutable and independent of later activity.
        with pytest.raises(AttributeError):
            after.publishes.sent = 0  # type: ignore[misc]
        await client.publish(name, b"one more")
        assert client.stats().publishes.acked == 51
        assert stats.publishes.acked == 50


async def test_killed_server_is_counted(fresh_liftbridge, name):
    server = fresh_liftbridge
    async with AsyncClient(server.address, ack_timeout=3.0, resubscribe_wait=30.0) as client:
        await client.create_stream(f"{name}.subj", name)
        sub = await client.subscribe(name, start_at="earliest")
        await client.publish(name, b"before")
        futures = [await client.publish_async(name, b"m%d" % i) for i in range(200)]
        server.kill()
        outcomes: dict[str, int] = {}
        for future in futures:
            try:
                await wait_future(future, 10)
                key = "acked"
            except LiftbridgeError as exc:
                key = type(exc).__name__
            outcomes[key] = outcomes.get(key, 0) + 1
        stats = client.stats()
        assert stats.publishes.sent == 201
        assert stats.publishes.acked == 1 + outcomes.pop("acked", 0)
        assert dict(stats.publishes.failed) == outcomes
        assert stats.publishes.in_flight == 0
        assert stats.brokers[0].connections_lost == 1

        server.restart()
        await client.publish(name, b"after", timeout=10.0)
        messages = [m.value for m in await take(sub, 2)]
        assert messages[0] == b"before"
        deadline = monotonic() + 30
        while messages[-1] != b"after":
            assert monotonic() < deadline
            messages.extend(m.value for m in await take(sub, 1))
        stats = client.stats()
        assert stats.resubscribes == 1
        assert stats.subscriptions[0].resubscribes == 1
        assert stats.brokers[0].connections_opened == 2
        assert stats.brokers[0].connections_lost == 1
        assert stats.messages_consumed == len(messages)


async def test_on_stats_is_called_periodically(liftbridge, name):
    seen: list[ClientStats] = []
    async with AsyncClient(liftbridge.address, stats_interval=0.05, on_stats=seen.append) as client:
        await client.create_stream(f"{name}.subj", name)
        await client.publish(name, b"x")
        deadline = monotonic() + 10
        while not any(s.publishes.acked == 1 for s in seen):
            assert monotonic() < deadline, "no statistics callback after the publish"
            await sleep(0.05)
        count = len(seen)
    await sleep(0.2)
    assert len(seen) <= count + 1  # stopped with the client
