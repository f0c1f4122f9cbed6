"""pyliftbridge: a pure-Python client for Liftbridge, with no grpcio.

Start with :class:`Client` (blocking, thread-safe) or :class:`AsyncClient`
(asyncio); both have the same methods. Every error derives from
:class:`LiftbridgeError`.
"""

from __future__ import annotations

from ._async._consumer import AsyncConsumer
from ._async._subscription import AsyncMergedSubscription, AsyncSubscription
from ._async.client import AsyncActivityStream, AsyncClient
from ._options import ChannelOptions, TLSConfig
from ._status import Status, StatusCode
from ._sync._consumer import Consumer
from ._sync._subscription import MergedSubscription, Subscription
from ._sync.client import ActivityStream, Client
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
    "CancelledError",
    "ChannelOptions",
    "Client",
    "ClientClosedError",
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
    "LiftbridgeError",
    "Message",
    "MessageSizeError",
    "MessageTooLargeError",
    "MergedSubscription",
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
    "TLSConfig",
    "UnavailableError",
    "__version__",
]
