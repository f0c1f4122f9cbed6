"""The activity iterators drop the server's repeated events (at-least-once delivery).

Liftbridge publishes an activity event again, with the same id, when it fails to
record in Raft that the event went out. The real server does that only under
load (a Raft timeout), so these tests feed the iterators a scripted sequence;
the integration test checks the iterator against the real server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator

from pyliftbridge import ActivityStream, AsyncActivityStream
from pyliftbridge._pb import api_pb2
from pyliftbridge.models import ActivityOp, Message

NS = 1_700_000_000_123_456_789


def _messages(ids: Iterable[int]) -> list[Message]:
    """One CREATE_STREAM event per id, at consecutive offsets of ``__activity``."""
    out = []
    for offset, event_id in enumerate(ids):
        event = api_pb2.ActivityStreamEvent(
            id=event_id,
            op=api_pb2.CREATE_STREAM,
            createStreamOp=api_pb2.CreateStreamOp(stream=f"s{event_id}", partitions=[0]),
        )
        wire = api_pb2.Message(
            offset=offset, value=event.SerializeToString(), stream="__activity", timestamp=NS
        )
        out.append(Message.from_proto(wire))
    return out


class _ScriptedSubscription:
    """Stands in for a subscription: yields the given messages, then ends."""

    def __init__(self, messages: list[Message]) -> None:
        self._messages: Iterator[Message] = iter(messages)
        self.closed = False

    def __next__(self) -> Message:
        return next(self._messages)

    async def __anext__(self) -> Message:
        try:
            return next(self._messages)
        except StopIteration:
            raise StopAsyncIteration from None

    def close(self) -> None:
        self.closed = True


class _AsyncScriptedSubscription(_ScriptedSubscription):
    async def close(self) -> None:  # type: ignore[override]
        self.closed = True


# The server's retry repeats the last event; a new leader replays from the last
# recorded index, which can repeat several.
IDS_WITH_REPEATS = [3, 5, 5, 5, 9, 11, 9, 11, 12]


def test_sync_iterator_drops_repeats() -> None:
    source = _ScriptedSubscription(_messages(IDS_WITH_REPEATS))
    with ActivityStream(source) as events:  # type: ignore[arg-type]
        got = [(event.id, event.offset, event.op) for event in events]
    assert got == [
        (3, 0, ActivityOp.CREATE_STREAM),
        (5, 1, ActivityOp.CREATE_STREAM),
        (9, 4, ActivityOp.CREATE_STREAM),
        (11, 5, ActivityOp.CREATE_STREAM),
        (12, 8, ActivityOp.CREATE_STREAM),
    ]
    assert source.closed


def test_sync_iterator_keeps_repeats_when_asked() -> None:
    source = _ScriptedSubscription(_messages(IDS_WITH_REPEATS))
    events = ActivityStream(source, deduplicate=False)  # type: ignore[arg-type]
    assert [event.id for event in events] == IDS_WITH_REPEATS


def test_async_iterator_drops_repeats() -> None:
    async def main() -> list[int]:
        source = _AsyncScriptedSubscription(_messages(IDS_WITH_REPEATS))
        async with AsyncActivityStream(source) as events:  # type: ignore[arg-type]
            got = [event.id async for event in events]
        assert source.closed
        return got

    assert asyncio.run(main()) == [3, 5, 9, 11, 12]


def test_async_iterator_keeps_repeats_when_asked() -> None:
    async def main() -> list[int]:
        source = _AsyncScriptedSubscription(_messages(IDS_WITH_REPEATS))
        events = AsyncActivityStream(source, deduplicate=False)  # type: ignore[arg-type]
        return [event.id async for event in events]

    assert asyncio.run(main()) == IDS_WITH_REPEATS
