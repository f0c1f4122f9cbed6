"""pyliftbridge: a pure-Python client for Liftbridge, with no grpcio.

Start with :class:`Client` (blocking, thread-safe) or :class:`AsyncClient`
(asyncio); both have the same methods. Every error derives from
:class:`LiftbridgeError`.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing
from typing import Any as _Any

from ._options import ChannelOptions, TLSConfig
from ._status import Status, StatusCode
from ._version import __version__
from .errors import (
    AckTimeoutError,
    CancelledError,
    ClientClosedError,
    ConsumerGroupError,
    DeadlineExceededError,
    EncryptionError,
    EndOfReadonlyPartitionError,
    EnvelopeError,
    IncorrectOffsetError,
    InvalidArgumentError,
    LiftbridgeError,
    MessageSizeError,
    MessageTooLargeError,
    NoKnownLeaderError,
    NoSuchPartitionError,
    NoSuchStreamError,
    NotLeaderError,
    PartitionPausedError,
    PermissionDeniedError,
    ProtocolError,
    ReadonlyPartitionError,
    RpcError,
    StopPositionReachedError,
    StreamDeletedError,
    StreamExistsError,
    UnavailableError,
)
from .models import (
    Ack,
    AckPolicy,
    ActivityEvent,
    ActivityOp,
    BrokerInfo,
    ConsumerGroupInfo,
    EventTimestamps,
    Message,
    Metadata,
    PartitionInfo,
    StreamInfo,
)
from .partitioners import KeyPartitioner, Partitioner, RoundRobinPartitioner

if _typing.TYPE_CHECKING:
    from ._async._consumer import AsyncConsumer
    from ._async._subscription import AsyncMergedSubscription, AsyncSubscription
    from ._async.client import AsyncActivityStream, AsyncClient
    from ._stats import (
        BrokerStats,
        ClientStats,
        LatencyStats,
        PublishStats,
        SubscriptionStats,
    )
    from ._sync._consumer import Consumer
    from ._sync._subscription import MergedSubscription, Subscription
    from ._sync.client import ActivityStream, Client

#: Loaded on first use, so that ``import pyliftbridge`` stays cheap: a
#: program that only uses the blocking client never imports asyncio, nor the
#: consumer-group machinery unless it asks for it.
_LAZY = {
    "ActivityStream": "._sync.client",
    "Client": "._sync.client",
    "Consumer": "._sync._consumer",
    "MergedSubscription": "._sync._subscription",
    "Subscription": "._sync._subscription",
    "AsyncActivityStream": "._async.client",
    "AsyncClient": "._async.client",
    "AsyncConsumer": "._async._consumer",
    "AsyncMergedSubscription": "._async._subscription",
    "AsyncSubscription": "._async._subscription",
    "BrokerStats": "._stats",
    "ClientStats": "._stats",
    "LatencyStats": "._stats",
    "PublishStats": "._stats",
    "SubscriptionStats": "._stats",
}


def __getattr__(name: str) -> _Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Ack",
    "AckPolicy",
    "AckTimeoutError",
    "ActivityEvent",
    "ActivityOp",
    "ActivityStream",
    "AsyncActivityStream",
    "AsyncClient",
    "AsyncConsumer",
    "AsyncMergedSubscription",
    "AsyncSubscription",
    "BrokerInfo",
    "BrokerStats",
    "CancelledError",
    "ChannelOptions",
    "Client",
    "ClientClosedError",
    "ClientStats",
    "Consumer",
    "ConsumerGroupError",
    "ConsumerGroupInfo",
    "DeadlineExceededError",
    "EncryptionError",
    "EndOfReadonlyPartitionError",
    "EnvelopeError",
    "EventTimestamps",
    "IncorrectOffsetError",
    "InvalidArgumentError",
    "KeyPartitioner",
    "LatencyStats",
    "LiftbridgeError",
    "MergedSubscription",
    "Message",
    "MessageSizeError",
    "MessageTooLargeError",
    "Metadata",
    "NoKnownLeaderError",
    "NoSuchPartitionError",
    "NoSuchStreamError",
    "NotLeaderError",
    "PartitionInfo",
    "PartitionPausedError",
    "Partitioner",
    "PermissionDeniedError",
    "ProtocolError",
    "PublishStats",
    "ReadonlyPartitionError",
    "RoundRobinPartitioner",
    "RpcError",
    "Status",
    "StatusCode",
    "StopPositionReachedError",
    "StreamDeletedError",
    "StreamExistsError",
    "StreamInfo",
    "Subscription",
    "SubscriptionStats",
    "TLSConfig",
    "UnavailableError",
    "__version__",
]
