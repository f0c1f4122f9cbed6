"""AsyncClient against a real 3-node Liftbridge cluster: routing and failover.

Source of ``tests/integration/_sync/test_cluster.py`` (``scripts/unasync.py``).
"""

from __future__ import annotations

import pytest

from pyliftbridge import AckPolicy, AckTimeoutError, AsyncClient, UnavailableError
from pyliftbridge._async._backend import monotonic, sleep

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


async def take(subscription, count):
    """The next ``count`` messages of a subscription."""
    return [await subscription.__anext__() for _ in range(count)]


async def publish_retrying(client, stream, value, timeout=30.0):
    """Publish with AckPolicy.ALL, retrying while the cluster fails over."""
    deadline = monotonic() + timeout
    while True:
        try:
            return await client.publish(stream, value, ack_policy=AckPolicy.ALL, timeout=5)
        except (UnavailableError, AckTimeoutError):
            # During failover the old leader is gone and, until it leaves the
            # ISR, an ALL ack cannot complete; the retry may store a duplicate.
            if monotonic() > deadline:
                raise
            await sleep(0.2)


def follower_of(cluster, stream, partition=0):
    """Index of a running node that does not lead the partition."""
    leader = cluster.leader_of(stream, partition)
    return next(i for i in cluster.running_nodes() if i != leader)


async def test_leader_bound_calls_route_from_a_follower_seed(liftbridge_cluster, name):
    cluster = liftbridge_cluster
    async with AsyncClient(cluster.addresses) as admin:
        await admin.create_stream(f"{name}.subj", name, replication_factor=3, partitions=2)
    seed = cluster.node(follower_of(cluster, name)).address
    # Only a follower is known up front: Subscribe and FetchPartitionMetadata
    # must find the leader through metadata.
    async with AsyncClient(seed) as client:
        for i in range(3):
            await client.publish(name, b"m%d" % i, ack_policy=AckPolicy.ALL)
        info = await client.fetch_partition_metadata(name, 0)
        assert info.leader is not None
        assert info.leader.address == cluster.node(cluster.leader_of(name, 0)).address
        assert len(info.replicas) == 3 and len(info.isr) >= 1
        async with await client.subscribe(name, start_at="earliest") as sub:
            assert [m.value for m in await take(sub, 3)] == [b"m0", b"m1", b"m2"]
        await client.set_cursor("cluster-cursor", name, 1, 7)
        assert await client.fetch_cursor("cluster-cursor", name, 1) == 7


async def test_read_from_isr_replica(liftbridge_cluster, name):
    cluster = liftbridge_cluster
    async with AsyncClient(cluster.addresses) as client:
        await client.create_stream(f"{name}.subj", name, replication_factor=3)
        for i in range(5):
            await client.publish(name, b"r%d" % i, ack_policy=AckPolicy.ALL)
        seen = set()
        for _ in range(6):
            async with await client.subscribe(
                name, start_at="earliest", read_isr_replica=True
            ) as sub:
                assert [m.value for m in await take(sub, 5)] == [b"r%d" % i for i in range(5)]
                seen.add(sub.partition)
        assert seen == {0}


async def test_resubscribe_after_partition_leader_is_killed(liftbridge_cluster, name):
    cluster = liftbridge_cluster
    async with AsyncClient(cluster.addresses, resubscribe_wait=60, timeout=15) as client:
        await client.create_stream(f"{name}.subj", name, replication_factor=3)
        for i in range(10):
            await client.publish(name, b"v%d" % i, ack_policy=AckPolicy.ALL)
        subscription = await client.subscribe(name, start_at="earliest")
        first = await take(subscription, 5)
        assert [m.offset for m in first] == [0, 1, 2, 3, 4]
        leader = cluster.leader_of(name, 0)
        cluster.kill(leader)
        rest = await take(subscription, 5)
        # Resumed at last offset + 1: nothing lost, nothing repeated.
        assert [m.offset for m in rest] == [5, 6, 7, 8, 9]
        ack = await publish_retrying(client, name, b"after-failover")
        assert ack is not None and ack.offset >= 10
        message = await subscription.__anext__()
        assert message.value == b"after-failover"
        metadata = await client.fetch_metadata([name])
        new_leader = metadata.stream(name).partitions[0].leader
        assert new_leader is not None
        assert new_leader.address != cluster.node(leader).address
        await subscription.close()


async def test_consumer_group_survives_losing_its_coordinator(liftbridge_cluster, name):
    cluster = liftbridge_cluster
    async with AsyncClient(cluster.addresses, timeout=15, resubscribe_wait=60) as client:
        await client.create_stream(f"{name}.subj", name, replication_factor=3)
        consumer = client.create_consumer(f"{name}-group", auto_offset="earliest")
        try:
            await consumer.subscribe([name])
            for i in range(3):
                await client.publish(name, b"before-%d" % i, ack_policy=AckPolicy.ALL)
            before = [(await consumer.get(timeout=15)).value for _ in range(3)]
            assert before == [b"before-0", b"before-1", b"before-2"]
            coordinator = consumer._coordinator
            victim = next(i for i, n in enumerate(cluster.nodes) if n.server_id == coordinator)
            cluster.kill(victim)
            for i in range(3):
                await publish_retrying(client, name, b"after-%d" % i)
            # The member keeps reading through the coordinator's loss (it reports
            # the coordinator, follows the new one, and resubscribes where the
            # partition's leadership moved). Retried publishes may repeat.
            seen: list[bytes] = []
            deadline = monotonic() + 60
            while not {b"after-0", b"after-1", b"after-2"} <= set(seen):
                assert monotonic() < deadline, seen
                seen.append((await consumer.get(timeout=max(0.1, deadline - monotonic()))).value)
            assert all(v.startswith((b"before-", b"after-")) for v in seen)
            # The group moves to a new coordinator, and the member follows it.
            while consumer._coordinator == coordinator:
                assert monotonic() < deadline, "the member never moved to a new coordinator"
                await sleep(0.2)
            await publish_retrying(client, name, b"with-new-coordinator")
            while (await consumer.get(timeout=max(0.1, deadline - monotonic()))).value != (
                b"with-new-coordinator"
            ):
                assert monotonic() < deadline
        finally:
            await consumer.close()
