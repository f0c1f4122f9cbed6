"""Keepalive against a real Liftbridge server, with both clients.

Liftbridge (v1.9.0) builds its gRPC server with grpc-go v1.49.0 and no
keepalive options, so grpc-go's default enforcement applies
(``internal/transport/http2_server.go``, ``handlePing``): a PING that comes
less than 5 minutes after the previous one is a strike, unless the server
has sent HEADERS or DATA since then (that resets the count); on the third
strike the server sends GOAWAY ENHANCE_YOUR_CALM "too_many_pings" and closes
the connection. An idle subscription sends nothing, so a client that was
allowed a short interval (``keepalive_min_interval`` lowered) gets that
GOAWAY on its fourth PING.

What is checked, for ``AsyncClient`` and ``Client``: the GOAWAY arrives and is
logged, the client pings half as often on the next connection (the back-off
is not lost with the connection the server closed), and the client keeps
working -- the subscription resumes on its own and receives a message
published afterwards. Each test has a server of its own (``fresh_liftbridge``):
the point is to have connections closed by the server.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import pytest

from pyliftbridge import AsyncClient, Client
from pyliftbridge._core.connection import GrpcConnection
from pyliftbridge._options import ChannelOptions

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

INTERVAL = 0.1
# The ack timeout is left longer than the interval, as a user lowering only
# the interval would (the default is 20 s); kept short so that a client that
# mistook an ack for silence would fail quickly.
OPTIONS = ChannelOptions(
    keepalive_interval=INTERVAL, keepalive_min_interval=INTERVAL, keepalive_timeout=1.0
)
# No background metadata refreshes: their responses would reset grpc-go's
# strike count and make the GOAWAY's timing depend on them.
CLIENT_ARGS: dict[str, Any] = {"options": OPTIONS, "metadata_refresh_interval": None}


class PingLog:
    """PINGs sent by the client, per connection (both front ends ping through the core)."""

    def __init__(self) -> None:
        self._times: dict[int, list[float]] = defaultdict(list)
        self._lock = threading.Lock()

    def record(self, core: GrpcConnection) -> None:
        with self._lock:
            self._times[id(core)].append(time.monotonic())

    def per_connection(self) -> list[list[float]]:
        """Ping times of each connection that pinged, in the order they started pinging."""
        with self._lock:
            return sorted((list(t) for t in self._times.values()), key=lambda t: t[0])


@pytest.fixture
def pings(monkeypatch: pytest.MonkeyPatch) -> PingLog:
    log = PingLog()
    original = GrpcConnection.ping

    def ping(self: GrpcConnection, opaque: bytes) -> None:
        log.record(self)
        original(self, opaque)

    monkeypatch.setattr(GrpcConnection, "ping", ping)
    return log


def backed_off(pings: PingLog) -> bool:
    """True once a second connection has pinged twice (a gap to measure)."""
    connections = pings.per_connection()
    return len(connections) >= 2 and len(connections[1]) >= 2


def check_backoff(pings: PingLog, caplog: pytest.LogCaptureFixture) -> None:
    goaways = [r for r in caplog.records if "too_many_pings" in r.getMessage()]
    assert goaways, caplog.text
    first, second = pings.per_connection()[:2]
    # grpc-go's third strike is the fourth PING since the subscribe response.
    assert len(first) >= 4, first
    gaps = [[b - a for a, b in zip(t, t[1:])] for t in (first, second)]
    assert min(gaps[0]) >= INTERVAL * 0.9, gaps
    # The new connection pings at twice the interval the server refused.
    assert min(gaps[1]) >= 2 * INTERVAL * 0.9, gaps


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


async def async_wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_async_client_backs_off_after_too_many_pings(
    fresh_liftbridge: Any, pings: PingLog, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    caplog.set_level(logging.INFO, logger="pyliftbridge")
    async with AsyncClient(fresh_liftbridge.address, **CLIENT_ARGS) as client:
        await client.create_stream(f"{name}.subject", name)
        async with await client.subscribe(name, start_at="earliest") as messages:
            first = asyncio.ensure_future(messages.__anext__())
            try:
                # ~4 pings to the GOAWAY, then 2 at the doubled interval: under 1 s.
                await async_wait_until(lambda: backed_off(pings), 10.0)
                assert not first.done()
                await client.publish(name, b"after the GOAWAY")
                message = await asyncio.wait_for(first, 10.0)
            finally:
                first.cancel()
            assert message.value == b"after the GOAWAY"
            assert message.offset == 0
    check_backoff(pings, caplog)


def test_blocking_client_backs_off_after_too_many_pings(
    fresh_liftbridge: Any, pings: PingLog, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    caplog.set_level(logging.INFO, logger="pyliftbridge")
    with Client(fresh_liftbridge.address, **CLIENT_ARGS) as client:
        client.create_stream(f"{name}.subject", name)
        # The iterator blocks: read it on a thread, as an application would. The
        # subscription closes before the pool waits for that thread.
        with ThreadPoolExecutor(1) as pool, client.subscribe(name, start_at="earliest") as messages:
            first = pool.submit(next, messages)
            # ~4 pings to the GOAWAY, then 2 at the doubled interval: under 1 s.
            wait_until(lambda: backed_off(pings), 10.0)
            assert not first.done()
            client.publish(name, b"after the GOAWAY")
            message = first.result(timeout=10.0)
            assert message.value == b"after the GOAWAY"
            assert message.offset == 0
    check_backoff(pings, caplog)
