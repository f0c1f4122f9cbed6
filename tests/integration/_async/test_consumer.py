"""Consumer groups (AsyncConsumer) against a real single-node Liftbridge server.

This file is the source of ``tests/integration/_sync/test_consumer.py``
(``scripts/unasync.py``): every test here runs against both clients. The
server of the ``liftbridge`` fixture drops a member after 3 s without a
heartbeat, so members heartbeat every 1.2 s and rebalances settle in about
that time.
"""

from __future__ import annotations

import pytest

import pyliftbridge._pb.api_pb2 as api_pb2
from pyliftbridge import (
    AsyncClient,
    ClientClosedError,
    ConsumerGroupError,
    InvalidArgumentError,
)
from pyliftbridge._async._backend import monotonic, sleep

pytestmark = pytest.mark.integration


async def wait_until(check, timeout=10.0, what="condition"):
    """Poll the coroutine function ``check`` until it returns true."""
    deadline = monotonic() + timeout
    while not await check():
        assert monotonic() < deadline, f"{what}: not met within {timeout}s"
        await sleep(0.05)


async def create_streams(client, name, count, partitions=3):
    """``count`` streams of ``partitions`` partitions each; returns their names."""
    streams = [f"{name}-s{i}" for i in range(count)]
    for stream in streams:
        await client.create_stream(f"{stream}.subj", stream, partitions=partitions)
    return streams


async def publish_each(client, streams, per_partition, tag, partitions=3):
    """Publish ``per_partition`` messages to every partition; returns their values."""
    values = set()
    for stream in streams:
        for partition in range(partitions):
            for i in range(per_partition):
                value = f"{tag}|{stream}|{partition}|{i}".encode()
                await client.publish(stream, value, partition=partition)
                values.add(value)
    return values


async def take(consumer, count, timeout=10.0):
    """The next ``count`` messages of a consumer."""
    deadline = monotonic() + timeout
    return [await consumer.get(timeout=deadline - monotonic()) for _ in range(count)]


async def assert_nothing_more(consumer, wait=0.3):
    with pytest.raises(TimeoutError):
        message = await consumer.get(timeout=wait)
        pytest.fail(f"unexpected message {message.value!r}")


async def collect(consumers, expected, timeout=15.0, quiet=0.4):
    """Read from every consumer until all of ``expected`` arrived and then ``quiet`` s of silence.

    Returns, per consumer, the messages it delivered.
    """
    received = [[] for _ in consumers]
    seen = set()
    deadline = monotonic() + timeout
    last = monotonic()
    while True:
        now = monotonic()
        if expected <= seen and now - last >= quiet:
            return received
        assert now < deadline, f"missing {sorted(expected - seen)[:5]}..."
        for index, consumer in enumerate(consumers):
            try:
                message = await consumer.get(timeout=0.02)
            except TimeoutError:
                continue
            received[index].append(message)
            seen.add(message.value)
            last = monotonic()


def keys_of(assignments):
    return {(stream, p) for stream, partitions in assignments.items() for p in partitions}


def assert_partition_order(messages):
    """Within a partition, offsets only grow."""
    last = {}
    for m in messages:
        key = (m.stream, m.partition)
        assert m.offset > last.get(key, -1), f"{key} went from {last[key]} to {m.offset}"
        last[key] = m.offset


async def group_exists(client, group):
    request = api_pb2.FetchMetadataRequest(groups=[group])
    response = await client._call_any("FetchMetadata", request, api_pb2.FetchMetadataResponse)
    return any(
        g.groupId == group and g.error == api_pb2.ConsumerGroupMetadata.OK
        for g in response.groupMetadata
    )


async def test_consumer_arguments_and_lifecycle(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        with pytest.raises(InvalidArgumentError):
            client.create_consumer("")
        with pytest.raises(InvalidArgumentError):
            client.create_consumer(name, auto_offset="oldest")
        with pytest.raises(InvalidArgumentError):
            client.create_consumer(name, fetch_interval=0)
        with pytest.raises(InvalidArgumentError):
            client.create_consumer(name, buffer=0)
        consumer = client.create_consumer(name, consumer_id="me")
        assert (consumer.group_id, consumer.consumer_id) == (name, "me")
        assert client.create_consumer(name).consumer_id != client.create_consumer(name).consumer_id
        with pytest.raises(ConsumerGroupError):
            await consumer.get(timeout=0.1)  # not subscribed yet
        with pytest.raises(InvalidArgumentError):
            await consumer.subscribe([])
        await consumer.close()
        await consumer.close()
        with pytest.raises(ClientClosedError):
            await consumer.subscribe([name])
        assert [m async for m in consumer] == []
    with pytest.raises(ClientClosedError):
        client.create_consumer(name)


async def test_one_member_reads_every_partition_of_two_streams(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        streams = await create_streams(client, name, 2)
        early = await publish_each(client, streams, 2, "early")
        async with client.create_consumer(name, auto_offset="earliest") as consumer:
            await consumer.subscribe(streams)
            assert consumer.assignments == {s: [0, 1, 2] for s in streams}
            with pytest.raises(ConsumerGroupError):
                await consumer.subscribe(streams)
            late = await publish_each(client, streams, 3, "late")
            messages = await take(consumer, len(early) + len(late))
            await assert_nothing_more(consumer)
        # Nothing of it keeps running.
        assert consumer._worker.done() and consumer._checkpointer.done()
        assert not consumer._pumps
        values = [m.value for m in messages]
        assert len(values) == len(set(values)) and set(values) == early | late
        for m in messages:
            _, stream, partition, _ = m.value.decode().split("|")
            assert (m.stream, m.partition) == (stream, int(partition))
        assert_partition_order(messages)


async def test_closing_the_client_under_a_consumer_ends_it(liftbridge, name):
    client = AsyncClient(liftbridge.address)
    try:
        (stream,) = await create_streams(client, name, 1)
        consumer = client.create_consumer(name)
        await consumer.subscribe([stream])
    finally:
        await client.close()
    with pytest.raises(ClientClosedError):
        await consumer.get(timeout=5)
    assert [m async for m in consumer] == []
    await consumer.close()
    assert consumer._worker.done() and not consumer._pumps


async def test_second_member_takes_half_the_partitions(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        streams = await create_streams(client, name, 2)
        everything = keys_of({s: [0, 1, 2] for s in streams})
        async with (
            client.create_consumer(name, consumer_id="a", auto_offset="earliest") as a,
            client.create_consumer(name, consumer_id="b", auto_offset="earliest") as b,
        ):
            await a.subscribe(streams)
            assert keys_of(a.assignments) == everything
            before = await publish_each(client, streams, 3, "before")
            first = await take(a, len(before))
            assert {m.value for m in first} == before
            # Queued in a's buffer, unread, when the group rebalances.
            during = await publish_each(client, streams, 2, "during")
            await sleep(0.2)

            await b.subscribe(streams)

            async def split():
                ka, kb = keys_of(a.assignments), keys_of(b.assignments)
                return a.epoch == b.epoch and ka and kb and not ka & kb and ka | kb == everything

            await wait_until(split, what="partitions split between a and b")
            owner = {key: "a" for key in keys_of(a.assignments)}
            owner.update({key: "b" for key in keys_of(b.assignments)})
            after = await publish_each(client, streams, 3, "after")
            got_a, got_b = await collect([a, b], during | after)

        delivered = [m.value for m in got_a + got_b]
        assert during | after <= set(delivered)
        # Each member sees a partition's messages in order, with no repeats of
        # its own: what it had queued for a partition it keeps is not read twice.
        assert_partition_order(first + got_a)
        assert_partition_order(got_b)
        # Published once the split settled: exactly once, by the partition's owner.
        for member, messages in (("a", got_a), ("b", got_b)):
            for m in messages:
                if m.value in after:
                    assert owner[(m.stream, m.partition)] == member
        assert sorted(v for v in delivered if v in after) == sorted(after)
        # Repeats only of what was in flight around the rebalance.
        assert set(delivered) - during - after <= before


async def test_closing_member_gives_its_partitions_back(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        (stream,) = await create_streams(client, name, 1)
        everything = {(stream, p) for p in range(3)}
        async with client.create_consumer(name, consumer_id="a", auto_offset="earliest") as a:
            b = client.create_consumer(name, consumer_id="b", auto_offset="earliest")
            await a.subscribe([stream])
            await b.subscribe([stream])

            async def split():
                ka, kb = keys_of(a.assignments), keys_of(b.assignments)
                return a.epoch == b.epoch and ka and kb and ka | kb == everything and not ka & kb

            await wait_until(split, what="partitions split between a and b")
            first = await publish_each(client, [stream], 3, "first")
            got_a, got_b = await collect([a, b], first)
            assert sorted(m.value for m in got_a + got_b) == sorted(first)

            await b.close()  # stores b's positions and leaves the group
            await b.close()
            assert [m async for m in b] == []

            async def a_has_everything():
                return keys_of(a.assignments) == everything

            await wait_until(a_has_everything, what="a reads every partition")
            second = await publish_each(client, [stream], 3, "second")
            (got,) = await collect([a], second)
        # b's stored positions and a's own: nothing of the first batch again.
        assert sorted(m.value for m in got) == sorted(second)


async def test_checkpoint_stores_last_consumed_offsets(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        (stream,) = await create_streams(client, name, 1)
        await publish_each(client, [stream], 4, "m")
        consumer = client.create_consumer(name, auto_checkpoint=None, auto_offset="earliest")
        async with consumer:
            await consumer.subscribe(stream)
            consumed = await take(consumer, 7)
            last = {}
            for m in consumed:
                last[m.partition] = m.offset
            for partition in range(3):
                assert await client.fetch_cursor(f"__group:{name}", stream, partition) == -1
            await consumer.checkpoint()
            for partition in range(3):
                stored = await client.fetch_cursor(f"__group:{name}", stream, partition)
                assert stored == last.get(partition, -1), partition


async def test_new_member_resumes_after_the_checkpoint(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        (stream,) = await create_streams(client, name, 1)
        published = await publish_each(client, [stream], 4, "old")
        first = client.create_consumer(name, auto_checkpoint=None, auto_offset="earliest")
        async with first:
            await first.subscribe([stream])
            consumed = {m.value for m in await take(first, 7)}
            await first.checkpoint()
        # Same group, new member: it starts after the stored positions, not "earliest".
        async with client.create_consumer(name, auto_offset="earliest") as second:
            await second.subscribe([stream])
            rest = await take(second, len(published) - len(consumed))
            assert {m.value for m in rest} == published - consumed
            new = await publish_each(client, [stream], 1, "new")
            assert {m.value for m in await take(second, len(new))} == new
            await assert_nothing_more(second)


@pytest.mark.parametrize(
    ("auto_offset", "expected"),
    [("earliest", [0, 1, 2, 3]), ("latest", [2, 3]), ("new", [3])],
)
async def test_auto_offset_without_stored_position(liftbridge, name, auto_offset, expected):
    async with AsyncClient(liftbridge.address) as client:
        (stream,) = await create_streams(client, name, 1, partitions=1)
        for i in range(3):
            await client.publish(stream, b"%d" % i)
        async with client.create_consumer(name, auto_offset=auto_offset) as consumer:
            await consumer.subscribe([stream])
            await client.publish(stream, b"3")
            messages = await take(consumer, len(expected))
            assert [m.offset for m in messages] == expected
            assert [m.value for m in messages] == [b"%d" % i for i in expected]
            await assert_nothing_more(consumer)


async def test_auto_offset_none(liftbridge, name):
    async with AsyncClient(liftbridge.address) as client:
        (stream,) = await create_streams(client, name, 1, partitions=1)
        for i in range(3):
            await client.publish(stream, b"%d" % i)
        async with client.create_consumer(f"{name}-x", auto_offset="none") as consumer:
            await consumer.subscribe([stream])
            with pytest.raises(ConsumerGroupError, match="no stored position"):
                await consumer.get(timeout=5)
            await assert_nothing_more(consumer)
        # With a stored position "none" is not consulted.
        await client.set_cursor(f"__group:{name}-y", stream, 0, 0)
        async with client.create_consumer(f"{name}-y", auto_offset="none") as consumer:
            await consumer.subscribe([stream])
            assert [m.offset for m in await take(consumer, 2)] == [1, 2]


async def test_expired_member_joins_again(liftbridge, name):
    waits = [4.5]  # one heartbeat pause longer than the server's 3 s consumer timeout

    def fetch_interval(consumer_timeout):
        return waits.pop() if waits else 0.4 * consumer_timeout

    async with AsyncClient(liftbridge.address) as client:
        (stream,) = await create_streams(client, name, 1)
        consumer = client.create_consumer(
            name, auto_offset="earliest", fetch_interval=fetch_interval
        )
        async with consumer:
            await consumer.subscribe([stream])
            first = await publish_each(client, [stream], 2, "first")
            assert {m.value for m in await take(consumer, len(first))} == first

            async def gone():
                return not await group_exists(client, name)

            async def back():
                return await group_exists(client, name) and keys_of(consumer.assignments) == {
                    (stream, p) for p in range(3)
                }

            # The only member expired, so the server deleted the group...
            await wait_until(gone, timeout=6, what="member expired")
            # ...and the member noticed at its next heartbeat and joined again.
            await wait_until(back, timeout=6, what="member joined again")
            second = await publish_each(client, [stream], 2, "second")
            assert {m.value for m in await take(consumer, len(second))} == second
            await assert_nothing_more(consumer)


async def test_expired_member_joins_again_while_others_stay(liftbridge, name, caplog):
    pause = []

    def fetch_interval(consumer_timeout):
        return pause.pop() if pause else 0.4 * consumer_timeout

    async with AsyncClient(liftbridge.address) as client:
        (stream,) = await create_streams(client, name, 1)
        everything = {(stream, p) for p in range(3)}
        a = client.create_consumer(
            name, consumer_id="a", auto_offset="earliest", fetch_interval=fetch_interval
        )
        b = client.create_consumer(name, consumer_id="b", auto_offset="earliest")
        async with a, b:
            await a.subscribe([stream])
            await b.subscribe([stream])

            async def split():
                ka, kb = keys_of(a.assignments), keys_of(b.assignments)
                return a.epoch == b.epoch and ka and kb and ka | kb == everything and not ka & kb

            await wait_until(split, what="partitions split between a and b")
            pause.append(4.5)  # a's next heartbeat comes after the 3 s consumer timeout
            first = await publish_each(client, [stream], 2, "first")

            async def a_dropped_and_back():
                dropped = any(
                    "a is no longer in the group" in r.getMessage() for r in caplog.records
                )
                return dropped and await split()

            await wait_until(a_dropped_and_back, timeout=12, what="a dropped, then back")
            second = await publish_each(client, [stream], 2, "second")
            got_a, got_b = await collect([a, b], first | second)
        delivered = [m.value for m in got_a + got_b]
        assert first <= set(delivered)
        assert sorted(v for v in delivered if v in second) == sorted(second)
