"""The gRPC transport (both front ends) against a real Liftbridge server.

Raw calls with ``pyliftbridge._pb.api_pb2`` messages, no client layer: what
is tested here is that the transport speaks to Liftbridge's grpc-go server
correctly -- unary calls, status codes, server streaming with the
subscription handshake, bidirectional PublishAsync, and flow control under a
subscriber that stops reading.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from pyliftbridge._options import ChannelOptions
from pyliftbridge._pb import api_pb2 as api
from pyliftbridge._status import StatusCode
from pyliftbridge.errors import LiftbridgeError, RpcError

# The front-end shim is shared with the interop tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "interop"))
from transport_fronts import FRONT_ENDS, run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

API = "/proto.API/"
KiB = 1024
MiB = 1024 * KiB


@pytest.fixture(params=FRONT_ENDS)
def front(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def create_stream(ch: Any, name: str, **fields: Any) -> None:
    request = api.CreateStreamRequest(subject=f"{name}.subject", name=name, **fields)
    raw = await ch.unary(API + "CreateStream", request.SerializeToString(), timeout=10)
    api.CreateStreamResponse.FromString(raw)


async def publish(ch: Any, stream: str, value: bytes) -> api.Ack:
    request = api.PublishRequest(
        stream=stream, value=value, ackPolicy=api.AckPolicy.LEADER, expectedOffset=-1
    )
    raw = await ch.unary(API + "Publish", request.SerializeToString(), timeout=10)
    return api.PublishResponse.FromString(raw).ack


async def publish_async(
    ch: Any, stream: str, values: list[bytes], *, half_close: bool = True
) -> list[api.PublishResponse]:
    """Pipeline ``values`` over one PublishAsync call; return the responses in arrival order.

    With ``half_close`` the call ends the proper way: half-close, then the
    server's OK. Liftbridge sometimes takes 5 s to answer the half-close
    (grpcio clients see the same), so bulk loading just closes the call
    once every ack is in.
    """
    async with await ch.open_call(API + "PublishAsync", timeout=60) as call:
        for i, value in enumerate(values):
            request = api.PublishRequest(
                stream=stream,
                value=value,
                correlationId=f"corr-{i}",
                ackPolicy=api.AckPolicy.LEADER,
                expectedOffset=-1,
            )
            await call.send(request.SerializeToString(), flush=i == len(values) - 1)
        responses = []
        for _ in values:
            raw = await call.recv()
            assert raw is not None, "PublishAsync ended before every ack arrived"
            responses.append(api.PublishResponse.FromString(raw))
        if half_close:
            await call.end()
            assert await call.recv() is None
            assert call.status is not None and call.status.ok
    return responses


async def subscribe(ch: Any, stream: str, **fields: Any) -> Any:
    """Start a Subscribe call and consume its handshake (an empty message)."""
    request = api.SubscribeRequest(stream=stream, **fields)
    call = await ch.server_stream(API + "Subscribe", request.SerializeToString())
    handshake = await call.recv(timeout=10)
    assert handshake == b"", handshake
    return call


def buffered_messages(call: Any) -> int:
    """Messages received by the transport and not yet read by the application."""
    inner = getattr(call, "call", call)  # the blocking Call behind the shim
    lock = getattr(inner._conn, "_state", None)
    if lock is None:
        return int(inner._inbox.pending_messages)
    with lock:
        return int(inner._inbox.pending_messages)


# ---------------------------------------------------------------------- tests


def test_fetch_metadata(front: str, liftbridge: Any) -> None:
    async def scenario(ch: Any) -> None:
        raw = await ch.unary(
            API + "FetchMetadata", api.FetchMetadataRequest().SerializeToString(), timeout=10
        )
        metadata = api.FetchMetadataResponse.FromString(raw)
        assert metadata.brokers
        assert liftbridge.port in [b.port for b in metadata.brokers]

    run(front, liftbridge.address, scenario)


def test_create_stream_and_already_exists(front: str, liftbridge: Any) -> None:
    name = unique("transport-create")

    async def scenario(ch: Any) -> None:
        await create_stream(ch, name, partitions=2)
        with pytest.raises(LiftbridgeError) as info:
            await create_stream(ch, name)
        assert isinstance(info.value, RpcError)
        assert info.value.status.code is StatusCode.ALREADY_EXISTS
        raw = await ch.unary(
            API + "FetchMetadata",
            api.FetchMetadataRequest(streams=[name]).SerializeToString(),
            timeout=10,
        )
        (stream,) = api.FetchMetadataResponse.FromString(raw).streamMetadata
        assert stream.name == name
        assert sorted(stream.partitions) == [0, 1]

    run(front, liftbridge.address, scenario)


def test_subscribe_handshake_then_messages(front: str, liftbridge: Any) -> None:
    name = unique("transport-subscribe")
    values = [b"", b"first", b"x" * 70_000, b"last"]

    async def scenario(ch: Any) -> None:
        await create_stream(ch, name)
        call = await subscribe(ch, name, startPosition=api.StartPosition.EARLIEST)
        try:
            for i, value in enumerate(values):
                ack = await publish(ch, name, value)
                assert (ack.stream, ack.offset) == (name, i)
            for i, value in enumerate(values):
                raw = await call.recv(timeout=10)
                assert raw is not None
                message = api.Message.FromString(raw)
                assert (message.offset, message.value, message.stream) == (i, value, name)
            assert not call.done
        finally:
            call.close()

    run(front, liftbridge.address, scenario)


def test_subscribe_to_missing_stream_fails(front: str, liftbridge: Any) -> None:
    async def scenario(ch: Any) -> None:
        request = api.SubscribeRequest(stream=unique("no-such-stream"))
        call = await ch.server_stream(API + "Subscribe", request.SerializeToString(), timeout=10)
        with pytest.raises(LiftbridgeError) as info:
            await call.recv()
        assert info.value.status.code is StatusCode.NOT_FOUND
        call.close()

    run(front, liftbridge.address, scenario)


def test_publish_async_acks_match_correlation_ids(front: str, liftbridge: Any) -> None:
    name = unique("transport-pubasync")
    count = 200

    async def scenario(ch: Any) -> None:
        await create_stream(ch, name)
        responses = await publish_async(ch, name, [b"value-%d" % i for i in range(count)])
        for response in responses:
            assert not response.HasField("asyncError"), response.asyncError
            assert response.ack.correlationId == response.correlationId
            assert response.ack.stream == name
            assert response.ack.ackPolicy == api.AckPolicy.LEADER
        by_id = {r.correlationId: r.ack.offset for r in responses}
        assert sorted(by_id) == sorted(f"corr-{i}" for i in range(count))
        # One stream, one partition, sent in order: offsets follow the sends.
        assert [by_id[f"corr-{i}"] for i in range(count)] == list(range(count))

    run(front, liftbridge.address, scenario)


def check_backpressure(
    front: str, address: str, size: int, count: int, window: int, *, check_bound: bool = True
) -> None:
    """Fill a partition with ``count`` messages of ``size`` bytes, subscribe, read
    nothing for a while, then everything: the transport may hold no more than
    the stream window meanwhile, and every message must then arrive, in order
    (which needs the WINDOW_UPDATEs sent as messages are consumed)."""
    name = unique("transport-backpressure")
    values = [bytes([i % 256]) * size for i in range(count)]
    options = ChannelOptions(stream_window=window, connection_window=4 * window)

    async def scenario(ch: Any) -> None:
        await create_stream(ch, name)
        responses = await publish_async(ch, name, values, half_close=False)
        assert sorted(r.ack.offset for r in responses) == list(range(count))

        call = await subscribe(ch, name, startPosition=api.StartPosition.EARLIEST)
        try:
            await asyncio.sleep(1.5)
            held = buffered_messages(call)
            # Complete messages are acknowledged when read, so at most a
            # window's worth (plus the one straddling its end) can be here.
            assert held > 0
            if check_bound:
                assert held <= window // size + 1, (held, window // size)
            for i in range(count):
                raw = await call.recv(timeout=10)
                assert raw is not None
                message = api.Message.FromString(raw)
                assert message.offset == i
                assert message.value == values[i]
            # Caught up, not ended.
            with pytest.raises(TimeoutError):
                await call.recv(timeout=0.3)
            assert not call.done
        finally:
            call.close()

    run(front, address, scenario, options=options, timeout=90)


def test_slow_subscriber_backpressure(front: str, liftbridge: Any) -> None:
    # 6 MiB in messages that each fit in one DATA frame, behind a 1 MiB window.
    check_backpressure(front, liftbridge.address, size=4 * KiB, count=1536, window=1 * MiB)


def test_slow_subscriber_multi_frame_messages_all_arrive(front: str, liftbridge: Any) -> None:
    # 64 KiB messages span five 16 KiB DATA frames each; the bound on what is
    # held is tested below, here only that all arrive, in order.
    size, count = 64 * KiB, 96
    check_backpressure(front, liftbridge.address, size, count, window=1 * MiB, check_bound=False)


def test_slow_subscriber_backpressure_multi_frame_messages(front: str, liftbridge: Any) -> None:
    # 64 KiB messages span five 16 KiB DATA frames each.
    check_backpressure(front, liftbridge.address, size=64 * KiB, count=96, window=1 * MiB)
