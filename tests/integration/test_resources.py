"""Nothing keeps running after close(): threads (blocking client), tasks and sockets."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from pyliftbridge import AsyncClient, Client

pytestmark = pytest.mark.integration


def _pyliftbridge_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("pyliftbridge-")]


def test_blocking_client_leaves_no_threads(liftbridge, name):
    before = set(_pyliftbridge_threads())
    with Client(liftbridge.address, metadata_refresh_interval=0.2) as client:
        client.create_stream(f"{name}.subj", name, partitions=2)
        for i in range(20):
            client.publish_async(name, b"%d" % i)
        client.flush(timeout=10)
        with client.subscribe_all(name, start_at="earliest", stop_at="latest") as merged:
            assert len(list(merged)) == 20
        subscription = client.subscribe(name, start_at="earliest")
        assert subscription.__next__().offset == 0
        time.sleep(0.5)  # let the metadata refresher run
        assert set(_pyliftbridge_threads()) - before
    deadline = time.monotonic() + 10
    while set(_pyliftbridge_threads()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(_pyliftbridge_threads()) - before, _pyliftbridge_threads()


def test_async_client_leaves_no_tasks(liftbridge, name):
    async def scenario() -> set[asyncio.Task[object]]:
        before = asyncio.all_tasks()
        async with AsyncClient(liftbridge.address, metadata_refresh_interval=0.2) as client:
            await client.create_stream(f"{name}.subj", name)
            await client.publish(name, b"x")
            subscription = await client.subscribe(name, start_at="earliest")
            assert (await subscription.__anext__()).offset == 0
            await asyncio.sleep(0.5)
        await asyncio.sleep(0.1)
        return asyncio.all_tasks() - before

    assert asyncio.run(scenario()) == set()
