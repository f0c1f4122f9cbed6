"""AsyncClient against a real single-node Liftbridge server.

This file is the source of ``tests/integration/_sync/test_client.py``
(``scripts/unasync.py``): every test here runs against both clients.
"""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta, timezone

import pytest

from pyliftbridge import (
    AckPolicy,
    ActivityOp,
    AsyncClient,
    ClientClosedError,
    IncorrectOffsetError,
    InvalidArgumentError,
    KeyPartitioner,
    MessageSizeError,
    MessageTooLargeError,
    NoSuchPartitionError,
    NoSuchStreamError,
    ReadonlyPartitionError,
    RoundRobinPartitioner,
    StreamExistsError,
)
from pyliftbridge._async._backend import monotonic, sleep, wait_future

pytestmark = pytest.mark.integration


async def take(subscription, count):
    """The next ``count`` messages of a subscription."""
    return [await subscription.__anext__() for _ in range(count)]


async def wait_until(check, timeout=10.0):
    """Poll the coroutine function ``check`` until it returns true."""
    deadline = monotonic() + timeout
    while not await check():
        assert monotonic() < deadline, "condition not met in time"
        await sleep(0.05)


async def drain(subscription):
    """Every message until the subscription ends by itself."""
    return [message async for message in subscription]


async def test_create_fetch_delete_stream(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        await client.create_stream(f"{name}.subj", name, partitions=2)
        with pytest.raises(StreamExistsError):
            await client.create_stream(f"{name}.subj", name)
        metadata = await client.fetch_metadata([name])
        info = metadata.stream(name)
        assert info.subject == f"{name}.subj"
        assert sorted(info.partitions) == [0, 1]
        assert info.partitions[0].leader is not None
        assert info.partitions[0].leader.address == liftbridge.address
        assert info.creation_time is not None and info.creation_time.tzinfo is not None
        await client.delete_stream(name)
        with pytest.raises(NoSuchStreamError):
            await client.delete_stream(name)
        metadata = await client.fetch_metadata([name])
        assert name not in metadata.streams


async def test_create_stream_with_every_option(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        await client.create_stream(
            f"{name}.subj",
            name,
            group="workers",
            replication_factor=1,
            partitions=3,
            retention_max_bytes=1 << 20,
            retention_max_messages=1000,
            retention_max_age=timedelta(hours=1),
            cleaner_interval=timedelta(minutes=1),
            segment_max_bytes=1 << 16,
            segment_max_age=timedelta(minutes=5),
            compact_max_goroutines=2,
            compact_enabled=False,
            auto_pause_time=timedelta(minutes=10),
            auto_pause_disable_if_subscribers=True,
            min_isr=1,
            optimistic_concurrency_control=False,
            encryption=False,
        )
        assert (await client.fetch_metadata([name])).partition_count(name) == 3
        with pytest.raises(InvalidArgumentError):
            await client.create_stream(f"{name}.other", f"{name}-rf", replication_factor=5)


async def test_publish_and_subscribe_round_trip(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        await client.create_stream(f"{name}.subj", name)
        before = datetime.now(timezone.utc) - timedelta(seconds=5)
        ack = await client.publish(
            name, b"hello", key="k1", headers={"h": b"v", "s": "text"}, correlation_id="c-1"
        )
        assert ack is not None
        assert (ack.stream, ack.partition, ack.offset) == (name, 0, 0)
        assert ack.correlation_id == "c-1"
        assert ack.ack_policy is AckPolicy.LEADER
        assert ack.message_subject == f"{name}.subj"
        assert ack.reception_timestamp is not None and ack.reception_timestamp > before
        second = await client.publish(name, "wörld")
        assert second is not None and second.offset == 1

        async with await client.subscribe(name, start_at="earliest") as subscription:
            first, other = await take(subscription, 2)
        assert (first.offset, first.key, first.value) == (0, b"k1", b"hello")
        assert first.headers["h"] == b"v" and first.headers["s"] == b"text"
        assert first.headers["subject"] == f"{name}.subj".encode()
        assert first.stream == name and first.partition == 0
        assert first.timestamp.tzinfo is not None and first.timestamp > before
        assert other.value == "wörld".encode() and other.key is None


async def test_encrypted_stream_round_trip(liftbridge, name):
    # pyliftbridge.testing starts the server with an encryption key.
    async with AsyncClient(liftbridge.address) as client:
        await client.create_stream(f"{name}.subj", name, encryption=True)
        ack = await client.publish(name, b"secret payload", key=b"k")
        assert ack is not None and ack.offset == 0
        async with await client.subscribe(name, start_at="earliest") as sub:
            message = await sub.__anext__()
        assert (message.key, message.value) == (b"k", b"secret payload")


async def test_ack_policies(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        await client.create_stream(f"{name}.subj", name)
        assert await client.publish(name, b"none", ack_policy=AckPolicy.NONE) is None
        ack_all = await client.publish(name, b"all", ack_policy=AckPolicy.ALL)
        assert ack_all is not None and ack_all.ack_policy is AckPolicy.ALL
        assert ack_all.commit_timestamp is not None
        async with await client.subscribe(name, start_at="earliest") as subscription:
            values = [m.value for m in await take(subscription, 2)]
        assert values == [b"none", b"all"]


async def test_publish_async_pipelined_then_flush(liftbridge, name):
    async with AsyncClient(liftbridge.address, max_inflight_publishes=64) as client:
        await client.create_stream(f"{name}.subj", name)
        futures = [await client.publish_async(name, b"m%d" % i) for i in range(500)]
        await client.flush(timeout=30)
        acks = [await wait_future(f, 0) for f in futures]
        assert [a.offset for a in acks] == list(range(500))
        async with await client.subscribe(name, start_at="earliest", stop_at="latest") as sub:
            received = await drain(sub)
        assert [m.value for m in received] == [b"m%d" % i for i in range(500)]


async def test_key_partitioner_matches_crc32(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        await client.create_stream(f"{name}.subj", name, partitions=4)
        keys = [b"foo", b"bar", b"", b"alpha", b"omega", b"\xff\x00"]
        for key in keys:
            ack = await client.publish(name, b"v", key=key, partitioner=KeyPartitioner())
            assert ack is not None
            assert ack.partition == zlib.crc32(key) % 4
        # The ack tells the truth: the message is in that partition.
        async with await client.subscribe(
            name, partition=zlib.crc32(b"foo") % 4, start_at="earliest"
        ) as sub:
            first = await sub.__anext__()
        assert first.partition == zlib.crc32(b"foo") % 4
        assert first.key in keys


async def test_round_robin_partitioner(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        await client.create_stream(f"{name}.subj", name, partitions=3)
        partitioner = RoundRobinPartitioner()
        parts = [
            (await client.publish(name, b"v", partitioner=partitioner)).partition for _ in range(6)
        ]
        assert parts == [0, 1, 2, 0, 1, 2]


async def test_optimistic_concurrency(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        await client.create_stream(f"{name}.subj", name, optimistic_concurrency_control=True)
        first = await client.publish(name, b"a", expected_offset=0)
        assert first is not None and first.offset == 0
        with pytest.raises(IncorrectOffsetError):
            await client.publish(name, b"b", expected_offset=5)
        second = await client.publish(name, b"c", expected_offset=1)
        assert second is not None and second.offset == 1


async def test_pause_and_resume(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        await client.create_stream(f"{name}.subj", name, partitions=2)
        await client.publish(name, b"before")
        await client.pause_stream(name, partitions=[0])
        partitions = (await client.fetch_metadata([name])).stream(name).partitions
        assert partitions[0].paused and not partitions[1].paused
        # Publishing to a paused partition resumes it and writes the message.
        ack = await client.publish(name, b"after")
        assert ack is not None and ack.offset == 1
        async with await client.subscribe(name, start_at="earliest") as sub:
            assert [m.value for m in await take(sub, 2)] == [b"before", b"after"]
        # A subscription can resume a paused partition too.
        await client.pause_stream(name, partitions=[1])
        async with await client.subscribe(name, partition=1, resume=True) as sub:
            assert sub.partition == 1
        with pytest.raises(NoSuchPartitionError):
            await client.pause_stream(name, partitions=[7])


async def test_readonly_partitions(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        await client.create_stream(f"{name}.subj", name)
        await client.publish(name, b"one")
        await client.publish(name, b"two")
        await client.set_stream_readonly(name)
        info = await client.fetch_partition_metadata(name, 0)
        assert info.readonly
        with pytest.raises(ReadonlyPartitionError):
            await client.publish(name, b"three")
        # Reading a readonly partition ends at its end, normally.
        async with await client.subscribe(name, start_at="earliest") as sub:
            values = [m.value for m in await drain(sub)]
        assert values == [b"one", b"two"]
        await client.set_stream_readonly(name, readonly=False)
        ack = await client.publish(name, b"three")
        assert ack is not None and ack.offset == 2


async def test_start_positions(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        await client.create_stream(f"{name}.subj", name)
        for i in range(5):
            await client.publish(name, b"%d" % i)
        async with await client.subscribe(name, start_at=2) as sub:
            assert [m.offset for m in await take(sub, 3)] == [2, 3, 4]
        async with await client.subscribe(name, start_at="latest") as sub:
            assert (await sub.__anext__()).offset == 4
        async with await client.subscribe(name, start_at=timedelta(hours=1)) as sub:
            assert (await sub.__anext__()).offset == 0
        async with await client.subscribe(
            name, start_at=datetime.now(timezone.utc) - timedelta(hours=1)
        ) as sub:
            assert (await sub.__anext__()).offset == 0
        async with await client.subscribe(name, start_at="new") as sub:
            await client.publish(name, b"fresh")
            message = await sub.__anext__()
            assert (message.offset, message.value) == (5, b"fresh")


async def test_subscribe_with_and_without_await(liftbridge, name):
    # Both spellings: the result of subscribe() is a context manager as it
    # is (httpx/aiokafka style), and awaiting it first keeps working.
    async with AsyncClient(liftbridge.address) as client:
        await client.create_stream(f"{name}.subj", name)
        for i in range(3):
            await client.publish(name, b"%d" % i)
        async with client.subscribe(name, start_at="earliest") as sub:
            assert [m.value for m in await take(sub, 3)] == [b"0", b"1", b"2"]
        # Leaving the block closed it: iteration ends at once.
        assert await drain(sub) == []
        async with await client.subscribe(name, start_at="earliest", stop_at=1) as sub:
            assert [m.offset for m in await drain(sub)] == [0, 1]
        sub = await client.subscribe(name, start_at="latest", stop_at="latest")
        try:
            assert [m.offset for m in await drain(sub)] == [2]
        finally:
            await sub.close()
        with pytest.raises(NoSuchPartitionError):
            async with client.subscribe(name, partition=5):
                pass
        with pytest.raises(NoSuchStreamError):
            async with client.subscribe_all(f"{name}-missing"):
                pass


async def test_stop_positions(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        await client.create_stream(f"{name}.subj", name)
        for i in range(5):
            await client.publish(name, b"%d" % i)
        async with await client.subscribe(name, start_at="earliest", stop_at=2) as sub:
            assert [m.offset for m in await drain(sub)] == [0, 1, 2]
        async with await client.subscribe(name, start_at=3, stop_at="latest") as sub:
            assert [m.offset for m in await drain(sub)] == [3, 4]
        stop_time = datetime.now(timezone.utc)
        await client.publish(name, b"late")
        async with await client.subscribe(name, start_at="earliest", stop_at=stop_time) as sub:
            assert [m.offset for m in await drain(sub)] == [0, 1, 2, 3, 4]
        with pytest.raises(InvalidArgumentError):
            await client.subscribe(name, start_at="sometime")


async def test_subscribe_errors(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        await client.create_stream(f"{name}.subj", name)
        with pytest.raises(NoSuchPartitionError):
            await client.subscribe(name, partition=3)
        with pytest.raises(NoSuchStreamError):
            await client.subscribe(f"{name}-missing")


async def test_read_isr_replica_on_single_node(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        await client.create_stream(f"{name}.subj", name)
        await client.publish(name, b"x")
        async with await client.subscribe(name, start_at="earliest", read_isr_replica=True) as sub:
            assert (await sub.__anext__()).value == b"x"


async def test_cursors(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        await client.create_stream(f"{name}.subj", name, partitions=2)
        assert await client.fetch_cursor("reader-a", name, 0) == -1
        for cursor_id in ("reader-a", "reader-b", "reader-c", "reader-d"):
            await client.set_cursor(cursor_id, name, 1, 41)
            assert await client.fetch_cursor(cursor_id, name, 1) == 41
        await client.set_cursor("reader-a", name, 1, 42)
        assert await client.fetch_cursor("reader-a", name, 1) == 42
        assert await client.fetch_cursor("reader-a", name, 0) == -1


async def test_publish_to_subject_keeps_headers(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        await client.create_stream(f"{name}.subj", name)
        ack = await client.publish_to_subject(
            f"{name}.subj", b"direct", key=b"k", headers={"trace": b"abc"}
        )
        assert ack is not None and ack.stream == name and ack.offset == 0
        async with await client.subscribe(name, start_at="earliest") as sub:
            message = await sub.__anext__()
        assert message.value == b"direct" and message.headers["trace"] == b"abc"


async def test_publish_to_subject_ack_names_the_partition(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        # A subject ending in a number token must not be read as a partition.
        subject = f"{name}.2024"
        await client.create_stream(subject, name, partitions=3)
        for partition in (0, 2, 1):
            target = subject if partition == 0 else f"{subject}.{partition}"
            ack = await client.publish_to_subject(target, f"to {partition}")
            assert ack is not None
            assert (ack.stream, ack.partition, ack.offset) == (name, partition, 0)
            assert (ack.partition_subject, ack.message_subject) == (subject, target)
        for partition in range(3):
            async with await client.subscribe(
                name, partition=partition, start_at="earliest"
            ) as sub:
                assert (await sub.__anext__()).value == f"to {partition}".encode()


async def test_message_sizes(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        await client.create_stream(f"{name}.subj", name)
        big = bytes(range(256)) * 3900  # just under the server's 1 MiB replication limit
        ack = await client.publish(name, big)
        assert ack is not None
        async with await client.subscribe(name, start_at="earliest") as sub:
            assert (await sub.__anext__()).value == big
        with pytest.raises(MessageTooLargeError):
            await client.publish(name, b"x" * (2 << 20))
        with pytest.raises(MessageSizeError):
            await client.publish(name, b"x" * (5 << 20))


async def test_dead_seed_is_tolerated(liftbridge, name):
    async with AsyncClient(["127.0.0.1:1", liftbridge.address], timeout=10) as client:
        await client.create_stream(f"{name}.subj", name)
        assert name in (await client.fetch_metadata()).streams


async def test_activity_stream(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        await client.create_stream(f"{name}.subj", name)
        await client.delete_stream(name)
        seen = []
        ids = []
        async with client.activity(start_at="earliest") as events:
            async for event in events:
                ids.append(event.id)
                if event.stream == name:
                    seen.append(event.op.name)
                    if event.op is ActivityOp.DELETE_STREAM:
                        break
        # The server may publish an event twice (at-least-once); the iterator
        # yields each id once, in Raft order.
        assert seen == ["CREATE_STREAM", "DELETE_STREAM"]
        assert ids == sorted(set(ids))


async def test_close_fails_pending_and_ends_subscriptions(liftbridge, name):
    client = AsyncClient(liftbridge.address, ack_timeout=30)
    await client.create_stream(f"{name}.subj", name)
    subscription = await client.subscribe(name, start_at="earliest")
    futures = [await client.publish_async(name, b"x%d" % i) for i in range(50)]
    await client.close()
    outcomes = []
    for future in futures:
        # Every future is resolved (a hang would time out here): acked before
        # the close, or failed with ClientClosedError -- never left pending.
        try:
            outcomes.append((await wait_future(future, 5)).offset)
        except ClientClosedError:
            outcomes.append("closed")
    assert len(outcomes) == 50
    acked = [o for o in outcomes if o != "closed"]
    assert acked == list(range(len(acked)))
    # The subscription ends instead of hanging.
    remaining = await drain(subscription)
    assert all(m.stream == name for m in remaining)
    with pytest.raises(ClientClosedError):
        await client.publish(name, b"after close")


async def test_subscribe_all_partitions(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        await client.create_stream(f"{name}.subj", name, partitions=3)
        for i in range(30):
            await client.publish(name, b"%d" % i, partition=i % 3)
        async with client.subscribe_all(
            name, start_at="earliest", stop_at="latest", buffer=4
        ) as merged:
            assert merged.partitions == [0, 1, 2]
            messages = [m async for m in merged]
        assert sorted(int(m.value) for m in messages) == list(range(30))
        for partition in range(3):
            offsets = [m.offset for m in messages if m.partition == partition]
            assert offsets == list(range(10))


async def test_publish_refused_with_not_found_is_sent_again_until_the_stream_exists(
    liftbridge, name
):
    # A broker that has not applied a stream's creation yet answers NOT_FOUND
    # (a cluster right after create_stream); here the stream is created just
    # after the publish left, which the server answers the same way. The
    # refused message was never written, so the client sends it again.
    async with AsyncClient(liftbridge.address, ack_timeout=5) as client:
        started = monotonic()
        future = await client.publish_async(name, b"early", partition=0)
        await sleep(0.02)
        await client.create_stream(f"{name}.subj", name)
        ack = await wait_future(future, 5)
        assert ack is not None and ack.offset == 0
        assert monotonic() - started < 2
        subscription = await client.subscribe(name, start_at="earliest", stop_at="latest")
        assert [m.value for m in await drain(subscription)] == [b"early"]
        # A stream that never comes still fails, after the retries.
        with pytest.raises(NoSuchPartitionError):
            await client.publish(f"{name}-never", b"x")
