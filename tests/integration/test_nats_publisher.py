"""pyliftbridge.nats_publisher against the NATS server of the test Liftbridge.

Needs the ``nats`` extra (nats-py). Messages go through NATS only; the
blocking client reads them back over gRPC.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from pyliftbridge import (
    Ack,
    AckPolicy,
    AckTimeoutError,
    Client,
    IncorrectOffsetError,
    InvalidArgumentError,
)

pytest.importorskip("nats", reason="nats-py (the nats extra) is not installed")

from pyliftbridge.nats_publisher import NatsPublisher, partition_subject

pytestmark = pytest.mark.integration


@pytest.fixture
def nats_url(liftbridge):
    url = getattr(liftbridge, "nats_url", None)
    if url is None:
        pytest.skip("the server given by --liftbridge-address has no known NATS address")
    return url


def _read_all(address, stream, partition=0):
    with (
        Client(address) as client,
        client.subscribe(
            stream, partition=partition, start_at="earliest", stop_at="latest"
        ) as messages,
    ):
        return list(messages)


async def test_publish_returns_typed_acks_and_messages_are_stored(liftbridge, nats_url, name):
    subject = f"{name}.subj"
    with Client(liftbridge.address) as client:
        client.create_stream(subject, name, partitions=2)
    async with NatsPublisher.connect(nats_url) as publisher:
        ack = await publisher.publish(
            subject, b"zero", key="k0", headers={"h": b"v"}, correlation_id="c0"
        )
        assert isinstance(ack, Ack)
        assert (ack.stream, ack.partition, ack.offset) == (name, 0, 0)
        assert (ack.correlation_id, ack.ack_inbox) == ("c0", publisher.ack_inbox)
        assert ack.ack_policy is AckPolicy.LEADER
        ack = await publisher.publish(
            subject, "one", partition=1, ack_policy=AckPolicy.ALL, crc=True
        )
        assert (ack.partition, ack.offset, ack.message_subject) == (1, 0, f"{subject}.1")
        assert ack.ack_policy is AckPolicy.ALL
        # Concurrent publishes pipeline; each gets its own ack.
        acks = await asyncio.gather(*(publisher.publish(subject, b"%d" % i) for i in range(1, 21)))
        assert sorted(a.offset for a in acks) == list(range(1, 21))
        assert await publisher.publish(subject, b"quiet", ack_policy=AckPolicy.NONE) is None
        await publisher.flush()

    zero, *rest = _read_all(liftbridge.address, name, 0)
    assert (zero.key, zero.value, zero.headers["h"]) == (b"k0", b"zero", b"v")
    assert sorted(m.value for m in rest[:20]) == sorted(b"%d" % i for i in range(1, 21))
    # The NONE publish is stored too, once the server got to it.
    deadline = time.monotonic() + 10
    while len(rest) < 21:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
        rest = _read_all(liftbridge.address, name, 0)[1:]
    assert rest[20].value == b"quiet"
    [one] = _read_all(liftbridge.address, name, 1)
    assert one.value == b"one"


async def test_nack_and_timeout_are_typed_errors(liftbridge, nats_url, name):
    subject = f"{name}.subj"
    with Client(liftbridge.address) as client:
        client.create_stream(subject, name, optimistic_concurrency_control=True)
    async with NatsPublisher.connect(nats_url, ack_timeout=10) as publisher:
        ack = await publisher.publish(subject, b"first", expected_offset=0)
        assert ack.offset == 0
        with pytest.raises(IncorrectOffsetError):
            await publisher.publish(subject, b"stale", expected_offset=0)
        # No stream listens there: nothing acks.
        with pytest.raises(AckTimeoutError):
            await publisher.publish(f"{name}.nobody", b"lost", timeout=0.3)
        with pytest.raises(InvalidArgumentError):
            await publisher.publish(subject, b"x", partition=-1)
        # A later publish on the same publisher still works.
        assert (await publisher.publish(subject, b"second", expected_offset=1)).offset == 1


async def test_borrowed_connection_stays_open(nats_url, liftbridge, name):
    import nats

    subject = f"{name}.subj"
    with Client(liftbridge.address) as client:
        client.create_stream(subject, name)
    connection = await nats.connect(nats_url)
    try:
        publisher = NatsPublisher(connection, ack_timeout=5)
        assert (await publisher.publish(subject, b"v")).offset == 0
        await publisher.close()
        assert connection.is_connected
    finally:
        await connection.close()


def test_partition_subject():
    assert partition_subject("orders") == "orders"
    assert partition_subject("orders", 3) == "orders.3"
    with pytest.raises(InvalidArgumentError):
        partition_subject("orders", True)
