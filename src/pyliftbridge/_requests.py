"""Building requests and interpreting answers, without I/O.

Both front ends (blocking and asyncio) share these functions, so argument
checking, wire defaults and the meaning of each server status live in one
place. Nothing here reads a clock: callers pass ``now_ns`` in.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Union

from ._pb import api_pb2
from ._status import STREAM_RESET_BY_SERVER, StatusCode
from ._time import datetime_to_ns, timedelta_to_ns
from .errors import (
    AckTimeoutError,
    ConsumerGroupError,
    EncryptionError,
    EndOfReadonlyPartitionError,
    IncorrectOffsetError,
    InvalidArgumentError,
    LiftbridgeError,
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
)
from .models import AckPolicy

__all__ = [
    "BytesLike",
    "Headers",
    "StartAt",
    "StopAt",
    "ack_error",
    "correlation_id_of",
    "create_stream_request",
    "cursor_request",
    "map_rpc_error",
    "map_subscribe_error",
    "publish_request",
    "publish_response_error",
    "publish_to_subject_request",
    "start_after",
    "subscribe_request",
    "subscription_ends_normally",
    "to_bytes",
]

#: What may be given where bytes are sent; str is encoded as UTF-8.
BytesLike = Union[bytes, bytearray, memoryview, str]
#: Message headers as given by users; str values are encoded as UTF-8.
Headers = Mapping[str, BytesLike]
#: Where a subscription starts: ``"new"`` (only messages published from now
#: on), ``"earliest"``, ``"latest"`` (the newest message, re-delivered), an
#: offset, an aware datetime, or a timedelta meaning "that long ago".
StartAt = Union[str, int, datetime, timedelta]
#: Where a subscription stops: None (never), ``"latest"`` (the newest message
#: at subscribe time), an offset, a past aware datetime, or a timedelta ago.
StopAt = Union[None, str, int, datetime, timedelta]

_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1
_MILLISECOND = timedelta(milliseconds=1)
_ACK_POLICIES = frozenset(AckPolicy)


# ---------------------------------------------------------------------------
# Argument checks


def to_bytes(value: BytesLike, what: str) -> bytes:
    """Return ``value`` as bytes (str → UTF-8).

    Raises:
        InvalidArgumentError: ``value`` is of any other type; ``what`` names it.
    """
    if type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise InvalidArgumentError(
        f"{what} must be bytes, bytearray, memoryview or str, not {type(value).__name__}"
    )


def _name(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidArgumentError(f"{what} must not be empty")
    return value


def _int(value: object, what: str, minimum: int, maximum: int) -> int:
    # bool is an int subclass; True as a partition count is surely a mistake.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgumentError(f"{what} must be an int, not {type(value).__name__}")
    if not minimum <= value <= maximum:
        if value < minimum:
            raise InvalidArgumentError(f"{what} must be >= {minimum}, got {value}")
        raise InvalidArgumentError(f"{what} must be <= {maximum}, got {value}")
    return value


def _bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{what} must be a bool, not {type(value).__name__}")
    return value


def _millis(value: object, what: str) -> int:
    if not isinstance(value, timedelta):
        raise InvalidArgumentError(
            f"{what} must be a datetime.timedelta, not {type(value).__name__}"
        )
    if value < timedelta(0):
        raise InvalidArgumentError(f"{what} must not be negative, got {value}")
    ms = value // _MILLISECOND
    if ms == 0 and value:
        # The server counts in whole milliseconds and reads 0 as "no limit" or
        # "disabled": truncating would turn a tiny value into the opposite.
        raise InvalidArgumentError(f"{what} must be 0 or at least 1 ms, got {value}")
    return _int(ms, f"{what} in milliseconds", 0, _INT64_MAX)


def _ack_policy(value: object) -> int:
    # Plain ints 0..2 are accepted too (IntEnum members hash and compare as ints).
    if not isinstance(value, int) or isinstance(value, bool) or value not in _ACK_POLICIES:
        raise InvalidArgumentError(f"ack_policy must be an AckPolicy, got {value!r}")
    return int(value)


def _expected_offset(value: int | None) -> int:
    # None is sent as -1 ("no expectation"): protobuf's own default 0 would
    # mean "must land at offset 0" on a stream with optimistic concurrency.
    return -1 if value is None else _int(value, "expected_offset", -1, _INT64_MAX)


def _headers(headers: Headers | None) -> dict[str, bytes]:
    if not headers:
        return {}
    if not isinstance(headers, Mapping):
        raise InvalidArgumentError(
            f"headers must be a mapping of str to bytes, not {type(headers).__name__}"
        )
    out: dict[str, bytes] = {}
    for name, value in headers.items():
        if not isinstance(name, str):
            raise InvalidArgumentError(f"header names must be str, got {name!r}")
        out[name] = to_bytes(value, f"header {name!r}")
    return out


# ---------------------------------------------------------------------------
# Requests


def create_stream_request(
    subject: str,
    name: str,
    *,
    group: str | None = None,
    replication_factor: int = 1,
    max_replication: bool = False,
    partitions: int = 1,
    retention_max_bytes: int | None = None,
    retention_max_messages: int | None = None,
    retention_max_age: timedelta | None = None,
    cleaner_interval: timedelta | None = None,
    segment_max_bytes: int | None = None,
    segment_max_age: timedelta | None = None,
    compact_max_goroutines: int | None = None,
    compact_enabled: bool | None = None,
    auto_pause_time: timedelta | None = None,
    auto_pause_disable_if_subscribers: bool | None = None,
    min_isr: int | None = None,
    optimistic_concurrency_control: bool | None = None,
    encryption: bool | None = None,
) -> api_pb2.CreateStreamRequest:
    """Build a CreateStreamRequest.

    Every option left as None is omitted, so the server's configured default
    applies. Durations are sent in milliseconds. ``max_replication=True``
    replicates to every server in the cluster (replicationFactor -1) and
    overrides ``replication_factor``.

    Raises:
        InvalidArgumentError: an argument has the wrong type or range.
    """
    req = api_pb2.CreateStreamRequest(
        subject=_name(subject, "subject"),
        name=_name(name, "name"),
        partitions=_int(partitions, "partitions", 1, _INT32_MAX),
    )
    if group is not None:
        if not isinstance(group, str):
            raise InvalidArgumentError(f"group must be a str, not {type(group).__name__}")
        req.group = group
    if _bool(max_replication, "max_replication"):
        req.replicationFactor = -1
    else:
        req.replicationFactor = _int(replication_factor, "replication_factor", 1, _INT32_MAX)

    int64_options = (
        ("retentionMaxBytes", retention_max_bytes, "retention_max_bytes"),
        ("retentionMaxMessages", retention_max_messages, "retention_max_messages"),
        ("segmentMaxBytes", segment_max_bytes, "segment_max_bytes"),
    )
    for attr, value, what in int64_options:
        if value is not None:
            _set_wrapper(req, attr, _int(value, what, 0, _INT64_MAX))
    int32_options = (
        ("compactMaxGoroutines", compact_max_goroutines, "compact_max_goroutines"),
        ("minIsr", min_isr, "min_isr"),
    )
    for attr, value, what in int32_options:
        if value is not None:
            _set_wrapper(req, attr, _int(value, what, 1, _INT32_MAX))
    duration_options = (
        ("retentionMaxAge", retention_max_age, "retention_max_age"),
        ("cleanerInterval", cleaner_interval, "cleaner_interval"),
        ("segmentMaxAge", segment_max_age, "segment_max_age"),
        ("autoPauseTime", auto_pause_time, "auto_pause_time"),
    )
    for attr, duration, what in duration_options:
        if duration is not None:
            _set_wrapper(req, attr, _millis(duration, what))
    bool_options = (
        ("compactEnabled", compact_enabled, "compact_enabled"),
        (
            "autoPauseDisableIfSubscribers",
            auto_pause_disable_if_subscribers,
            "auto_pause_disable_if_subscribers",
        ),
        (
            "optimisticConcurrencyControl",
            optimistic_concurrency_control,
            "optimistic_concurrency_control",
        ),
        ("encryption", encryption, "encryption"),
    )
    for attr, flag, what in bool_options:
        if flag is not None:
            _set_wrapper(req, attr, _bool(flag, what))
    return req


def _set_wrapper(req: api_pb2.CreateStreamRequest, attr: str, value: int | bool) -> None:
    wrapper = getattr(req, attr)
    # Presence of the wrapper is what tells the server to override its
    # default, so mark it present even when the value is 0 / False.
    wrapper.SetInParent()
    wrapper.value = value


def _start(start_at: StartAt, now_ns: int, req: api_pb2.SubscribeRequest) -> None:
    if isinstance(start_at, str):
        position = _START_NAMES.get(start_at)
        if position is None:
            raise InvalidArgumentError(
                f"start_at must be 'new', 'earliest', 'latest', an offset, a datetime "
                f"or a timedelta, got {start_at!r}"
            )
        req.startPosition = position
    elif isinstance(start_at, bool):
        raise InvalidArgumentError(f"start_at must not be a bool, got {start_at!r}")
    elif isinstance(start_at, int):
        req.startPosition = api_pb2.OFFSET
        req.startOffset = _int(start_at, "start_at offset", 0, _INT64_MAX)
    elif isinstance(start_at, datetime):
        req.startPosition = api_pb2.TIMESTAMP
        req.startTimestamp = datetime_to_ns(start_at, "start_at")
    elif isinstance(start_at, timedelta):
        if start_at < timedelta(0):
            raise InvalidArgumentError(
                f"start_at timedelta means 'this long ago' and must not be negative, got {start_at}"
            )
        req.startPosition = api_pb2.TIMESTAMP
        req.startTimestamp = now_ns - timedelta_to_ns(start_at)
    else:
        raise InvalidArgumentError(
            f"start_at must be 'new', 'earliest', 'latest', an int offset, a datetime "
            f"or a timedelta, not {type(start_at).__name__}"
        )


_START_NAMES = {
    "new": api_pb2.NEW_ONLY,
    "earliest": api_pb2.EARLIEST,
    "latest": api_pb2.LATEST,
}


def _stop(stop_at: StopAt, now_ns: int, req: api_pb2.SubscribeRequest) -> None:
    if stop_at is None:
        req.stopPosition = api_pb2.STOP_ON_CANCEL
    elif isinstance(stop_at, str):
        if stop_at != "latest":
            raise InvalidArgumentError(
                f"stop_at must be None, 'latest', an offset, a datetime or a timedelta, "
                f"got {stop_at!r}"
            )
        req.stopPosition = api_pb2.STOP_LATEST
    elif isinstance(stop_at, bool):
        raise InvalidArgumentError(f"stop_at must not be a bool, got {stop_at!r}")
    elif isinstance(stop_at, int):
        req.stopPosition = api_pb2.STOP_OFFSET
        req.stopOffset = _int(stop_at, "stop_at offset", 0, _INT64_MAX)
    elif isinstance(stop_at, datetime):
        ns = datetime_to_ns(stop_at, "stop_at")
        if ns > now_ns:
            # As go-liftbridge: the server would resolve a future time to the
            # current end and stop there, which is not what was asked for.
            raise InvalidArgumentError(f"stop_at must not be in the future, got {stop_at}")
        req.stopPosition = api_pb2.STOP_TIMESTAMP
        req.stopTimestamp = ns
    elif isinstance(stop_at, timedelta):
        if stop_at < timedelta(0):
            raise InvalidArgumentError(
                f"stop_at timedelta means 'this long ago' and must not be negative, got {stop_at}"
            )
        req.stopPosition = api_pb2.STOP_TIMESTAMP
        req.stopTimestamp = now_ns - timedelta_to_ns(stop_at)
    else:
        raise InvalidArgumentError(
            f"stop_at must be None, 'latest', an int offset, a datetime or a timedelta, "
            f"not {type(stop_at).__name__}"
        )


def cursor_request(
    cursor_id: str, stream: str, partition: int, offset: int | None = None
) -> api_pb2.SetCursorRequest | api_pb2.FetchCursorRequest:
    """A FetchCursorRequest, or a SetCursorRequest when ``offset`` is given.

    Legal offsets are -1 and up: the server stores any int64, and its
    FetchCursor answers -1 for "no position stored", so setting -1 clears a
    position (a consumer group then starts there by its ``auto_offset``).
    Anything lower would read back as a position that no message has.

    Raises:
        InvalidArgumentError: an empty id or stream, a bad partition or offset.
    """
    cursor_id = _name(cursor_id, "cursor_id")
    stream = _name(stream, "stream")
    partition = _int(partition, "partition", 0, _INT32_MAX)
    if offset is None:
        return api_pb2.FetchCursorRequest(stream=stream, partition=partition, cursorId=cursor_id)
    offset = _int(offset, "offset", -1, _INT64_MAX)
    return api_pb2.SetCursorRequest(
        stream=stream, partition=partition, cursorId=cursor_id, offset=offset
    )


def subscribe_request(
    stream: str,
    partition: int = 0,
    *,
    start_at: StartAt = "new",
    stop_at: StopAt = None,
    read_isr_replica: bool = False,
    resume: bool = False,
    now_ns: int,
    group_id: str | None = None,
    consumer_id: str | None = None,
    group_epoch: int = 0,
) -> api_pb2.SubscribeRequest:
    """Build a SubscribeRequest.

    Timestamps are Unix nanoseconds; a timedelta (for ``start_at`` or
    ``stop_at``) is counted back from ``now_ns``. ``group_id``,
    ``consumer_id`` and ``group_epoch`` are for consumer-group members only
    (both ids or neither; not with ``read_isr_replica``).

    Raises:
        InvalidArgumentError: bad stream/partition, an unknown start or stop
            form, a naive datetime, a stop time in the future, or a stop
            offset before the start offset.
    """
    req = api_pb2.SubscribeRequest(
        stream=_name(stream, "stream"),
        partition=_int(partition, "partition", 0, _INT32_MAX),
        readISRReplica=_bool(read_isr_replica, "read_isr_replica"),
        resume=_bool(resume, "resume"),
    )
    _start(start_at, now_ns, req)
    _stop(stop_at, now_ns, req)
    if (
        req.startPosition == api_pb2.OFFSET
        and req.stopPosition == api_pb2.STOP_OFFSET
        and req.stopOffset < req.startOffset
    ):
        raise InvalidArgumentError(
            f"stop_at offset {req.stopOffset} is before start_at offset {req.startOffset}"
        )
    if group_id is not None or consumer_id is not None:
        if group_id is None or consumer_id is None:
            raise InvalidArgumentError("group_id and consumer_id must be given together")
        req.consumer.groupId = _name(group_id, "group_id")
        req.consumer.consumerId = _name(consumer_id, "consumer_id")
        req.consumer.groupEpoch = _int(group_epoch, "group_epoch", 0, _UINT64_MAX)
        if read_isr_replica:
            raise InvalidArgumentError("read_isr_replica cannot be used by consumer-group members")
    return req


def start_after(request: api_pb2.SubscribeRequest, last_offset: int) -> api_pb2.SubscribeRequest:
    """A copy of ``request`` that resumes right after ``last_offset``.

    Used to resubscribe after a failure: the copy starts at ``last_offset + 1``
    (OFFSET) and keeps the partition, stop position and every other option, so
    nothing is delivered twice or skipped. (go-liftbridge resubscribed with the
    original start position: go-liftbridge#51, #69, #110.) Note that a
    STOP_LATEST stop is re-evaluated by the server on resubscribe.

    Raises:
        StopPositionReachedError: the request stops at an offset and
            ``last_offset`` already reached it: there is nothing left to read.
        InvalidArgumentError: ``last_offset`` < -1.
    """
    _int(last_offset, "last_offset", -1, _INT64_MAX - 1)
    if request.stopPosition == api_pb2.STOP_OFFSET and last_offset >= request.stopOffset:
        raise StopPositionReachedError(
            f"stop offset {request.stopOffset} already reached (last offset {last_offset})"
        )
    copy = api_pb2.SubscribeRequest()
    copy.CopyFrom(request)
    copy.startPosition = api_pb2.OFFSET
    copy.startOffset = last_offset + 1
    copy.ClearField("startTimestamp")
    return copy


def publish_request(
    stream: str,
    value: BytesLike,
    *,
    key: BytesLike | None = None,
    headers: Headers | None = None,
    partition: int = 0,
    ack_policy: AckPolicy = AckPolicy.LEADER,
    expected_offset: int | None = None,
    correlation_id: str,
) -> api_pb2.PublishRequest:
    """Build a PublishRequest (for Publish and PublishAsync).

    ``expected_offset`` None is sent as -1 ("no expectation"); protobuf's own
    default 0 would mean "must land at offset 0" on a stream with optimistic
    concurrency control.

    Raises:
        InvalidArgumentError: an argument has the wrong type or range.
    """
    if not isinstance(correlation_id, str):
        raise InvalidArgumentError(
            f"correlation_id must be a str, not {type(correlation_id).__name__}"
        )
    return api_pb2.PublishRequest(
        stream=_name(stream, "stream"),
        partition=_int(partition, "partition", 0, _INT32_MAX),
        key=b"" if key is None else to_bytes(key, "key"),
        value=to_bytes(value, "value"),
        headers=_headers(headers),
        correlationId=correlation_id,
        ackPolicy=_ack_policy(ack_policy),
        expectedOffset=_expected_offset(expected_offset),
    )


def publish_to_subject_request(
    subject: str,
    value: BytesLike,
    *,
    key: BytesLike | None = None,
    headers: Headers | None = None,
    ack_policy: AckPolicy = AckPolicy.LEADER,
    correlation_id: str,
) -> api_pb2.PublishToSubjectRequest:
    """Build a PublishToSubjectRequest (headers included, unlike go-liftbridge).

    Raises:
        InvalidArgumentError: an argument has the wrong type or range.
    """
    if not isinstance(correlation_id, str):
        raise InvalidArgumentError(
            f"correlation_id must be a str, not {type(correlation_id).__name__}"
        )
    return api_pb2.PublishToSubjectRequest(
        subject=_name(subject, "subject"),
        key=b"" if key is None else to_bytes(key, "key"),
        value=to_bytes(value, "value"),
        headers=_headers(headers),
        correlationId=correlation_id,
        ackPolicy=_ack_policy(ack_policy),
    )


def envelope_message(
    value: BytesLike,
    *,
    key: BytesLike | None = None,
    headers: Headers | None = None,
    ack_inbox: str = "",
    correlation_id: str = "",
    ack_policy: AckPolicy = AckPolicy.LEADER,
    expected_offset: int | None = None,
) -> api_pb2.Message:
    """Build the ``proto.Message`` carried by a publish envelope sent to NATS.

    The server reads ``offset`` as the expected offset there; None is sent
    as -1 ("no expectation"), as for the Publish RPCs.

    Raises:
        InvalidArgumentError: an argument has the wrong type or range.
    """
    for text, what in ((ack_inbox, "ack_inbox"), (correlation_id, "correlation_id")):
        if not isinstance(text, str):
            raise InvalidArgumentError(f"{what} must be a str, not {type(text).__name__}")
    return api_pb2.Message(
        offset=_expected_offset(expected_offset),
        key=b"" if key is None else to_bytes(key, "key"),
        value=to_bytes(value, "value"),
        headers=_headers(headers),
        ackInbox=ack_inbox,
        correlationId=correlation_id,
        ackPolicy=_ack_policy(ack_policy),
    )


def partition_of_ack(stream_subject: str, message_subject: str) -> int:
    """The partition an ack from PublishToSubject or NATS refers to.

    Acks do not carry the partition. Their ``partitionSubject`` is the
    stream's own subject (despite the name) and ``msgSubject`` the subject
    the message arrived on, and partition N > 0 of a stream listens on
    ``<stream subject>.N``: so the partition is the number token that
    ``msgSubject`` has beyond the stream subject, and 0 when it has none.
    With a ``>`` wildcard in the stream subject that cannot be told apart,
    and 0 is returned.
    """
    pattern = stream_subject.split(".")
    tokens = message_subject.split(".")
    if len(tokens) != len(pattern) + 1 or ">" in pattern:
        return 0
    last = tokens[-1]
    if not (last.isdigit() and last.isascii()) or str(int(last)) != last:
        return 0
    if all(p in ("*", token) for p, token in zip(pattern, tokens)):
        return int(last)
    return 0


# ---------------------------------------------------------------------------
# Errors


def _typed(cls: type[LiftbridgeError], description: str, error: LiftbridgeError) -> LiftbridgeError:
    if type(error) is cls:
        # Already classified (by error_from_status, or mapped before).
        return error
    details = error.details
    return cls(f"{description}: {details}" if details else description, status=error.status)


def _common(error: LiftbridgeError, text: str) -> LiftbridgeError | None:
    """Meanings that hold whatever the call."""
    code = error.code
    if "no known metadata leader" in text:
        # Raised as INTERNAL, and wrapped in other codes by some handlers.
        return _typed(NoKnownLeaderError, "the cluster has no metadata leader yet", error)
    if code in (StatusCode.PERMISSION_DENIED, StatusCode.UNAUTHENTICATED) or (
        # With TLS client authorization the server refuses with a plain Go
        # error, which reaches the client as UNKNOWN.
        code is StatusCode.UNKNOWN
        and ("is not authorized to call" in text or "failed to retrieve client id" in text)
    ):
        return _typed(PermissionDeniedError, "permission denied", error)
    return None


_GROUP_METHODS = frozenset(
    {
        "JoinConsumerGroup",
        "LeaveConsumerGroup",
        "FetchConsumerGroupAssignments",
        "ReportConsumerGroupCoordinator",
    }
)


def map_rpc_error(method: str, error: LiftbridgeError) -> LiftbridgeError:
    """Give a failed unary call's error its call-specific class.

    ``method`` is the bare method name (``"CreateStream"``) or the full path
    (``"/proto.API/CreateStream"``). The result keeps ``error.status``; an
    error with no status, or with a status that means nothing special for
    ``method``, is returned unchanged.
    """
    code = error.code
    if code is None or isinstance(error, ProtocolError):
        # The client's own verdict on what the server sent: no call-specific meaning.
        return error
    text = error.details.lower()
    common = _common(error, text)
    if common is not None:
        return common
    name = method.rsplit("/", 1)[-1]
    S = StatusCode
    if name == "CreateStream":
        if code is S.ALREADY_EXISTS:
            return _typed(StreamExistsError, "stream already exists", error)
        # FAILED_PRECONDITION also covers Raft failures; only the encryption
        # precondition is an EncryptionError.
        if code is S.FAILED_PRECONDITION and "encryption" in text:
            return _typed(
                EncryptionError,
                "the server cannot encrypt streams (is LIFTBRIDGE_ENCRYPTION_KEY set?)",
                error,
            )
    elif name == "DeleteStream":
        if code is S.NOT_FOUND:
            return _typed(NoSuchStreamError, "stream does not exist", error)
    elif name in ("PauseStream", "SetStreamReadonly"):
        if code is S.NOT_FOUND:
            return _typed(NoSuchPartitionError, "stream or partition does not exist", error)
    elif name == "FetchPartitionMetadata":
        if code is S.NOT_FOUND:
            return _typed(NoSuchPartitionError, "partition does not exist", error)
        if code is S.FAILED_PRECONDITION:
            return _typed(NotLeaderError, "broker is not the partition leader", error)
    elif name in ("SetCursor", "FetchCursor"):
        if code is S.FAILED_PRECONDITION:
            return _typed(NotLeaderError, "broker is not the cursors partition leader", error)
    elif name in ("Publish", "PublishToSubject"):
        mapped = _publish_rpc_error(name, error, text)
        if mapped is not None:
            return mapped
    elif name in _GROUP_METHODS and (
        code is S.NOT_FOUND
        or (code is S.FAILED_PRECONDITION and ("consumer" in text or "group" in text))
    ):
        return _typed(ConsumerGroupError, f"{name} failed", error)
    return error


def _publish_rpc_error(name: str, error: LiftbridgeError, text: str) -> LiftbridgeError | None:
    code = error.code
    S = StatusCode
    if code is S.DEADLINE_EXCEEDED:
        # The server waits for the ack only until the deadline: the message
        # may or may not have been stored.
        return _typed(AckTimeoutError, "no ack before the deadline", error)
    if code is S.INVALID_ARGUMENT and "exceeds max replication size" in text:
        return _typed(MessageTooLargeError, "message too large", error)
    if code is S.UNKNOWN and "incorrect expected offset" in text:
        return _typed(IncorrectOffsetError, "expected offset did not match", error)
    if name == "Publish":
        # Unary Publish turns its per-message checks into status codes
        # (server/api.go convertPublishAsyncError).
        if code is S.NOT_FOUND:
            return _typed(NoSuchPartitionError, "stream or partition does not exist", error)
        if code is S.FAILED_PRECONDITION:
            return _typed(ReadonlyPartitionError, "partition is readonly", error)
        if code is S.INTERNAL and "encrypt" in text:
            return _typed(EncryptionError, "encryption failed", error)
    return None


def map_subscribe_error(error: LiftbridgeError, *, handshake: bool) -> LiftbridgeError:
    """Give a Subscribe error its class.

    ``handshake`` is True when the call failed before the server's empty
    "subscription created" message, False when an open subscription ended
    with an error. The same code means different things in the two phases
    (NOT_FOUND: no such partition vs. stream deleted). Errors without a
    status, or with an unremarkable one, are returned unchanged.
    """
    code = error.code
    if code is None or isinstance(error, ProtocolError):
        # A message over the size limit (RESOURCE_EXHAUSTED) is no stop position.
        return error
    text = error.details.lower()
    common = _common(error, text)
    if common is not None:
        return common
    S = StatusCode
    if handshake:
        if code is S.NOT_FOUND:
            return _typed(NoSuchPartitionError, "no such stream partition", error)
        if code is S.FAILED_PRECONDITION:
            if "not currently assigned" in text:
                return _typed(
                    ConsumerGroupError,
                    "another group member holds this partition with a newer epoch",
                    error,
                )
            return _typed(NotLeaderError, "broker is not the partition leader", error)
        if code is S.RESOURCE_EXHAUSTED:
            if "stream is empty" in text:
                # stop_at="latest" on an empty partition: nothing to read.
                return _typed(StopPositionReachedError, "nothing to read before stop", error)
            return _typed(EndOfReadonlyPartitionError, "end of readonly partition", error)
    else:
        if code is S.NOT_FOUND:
            return _typed(StreamDeletedError, "stream was deleted", error)
        if code is S.FAILED_PRECONDITION:
            return _typed(PartitionPausedError, "partition was paused", error)
        if code is S.RESOURCE_EXHAUSTED:
            if "end of readonly" in text:
                return _typed(EndOfReadonlyPartitionError, "end of readonly partition", error)
            if text.startswith(STREAM_RESET_BY_SERVER):
                # RST_STREAM ENHANCE_YOUR_CALM: the server gave up on the
                # stream; that is no stop position.
                return error
            return _typed(StopPositionReachedError, "stop position reached", error)
    return error


def subscription_ends_normally(error: BaseException) -> bool:
    """True when ``error`` just marks the end of a finite subscription.

    End of a readonly partition and reaching the stop position are how the
    server says "done"; an iterator should stop rather than raise.
    """
    return isinstance(error, (EndOfReadonlyPartitionError, StopPositionReachedError))


_ASYNC_ERRORS: dict[int, tuple[type[LiftbridgeError], str]] = {
    api_pb2.PublishAsyncError.NOT_FOUND: (NoSuchPartitionError, "stream or partition not found"),
    api_pb2.PublishAsyncError.READONLY: (ReadonlyPartitionError, "partition is readonly"),
    api_pb2.PublishAsyncError.INCORRECT_OFFSET: (
        IncorrectOffsetError,
        "expected offset did not match",
    ),
    api_pb2.PublishAsyncError.ENCRYPTION_FAILED: (EncryptionError, "encryption failed"),
    api_pb2.PublishAsyncError.PERMISSION_DENIED: (PermissionDeniedError, "permission denied"),
    api_pb2.PublishAsyncError.BAD_REQUEST: (InvalidArgumentError, "bad publish request"),
}

_ACK_ERRORS: dict[int, tuple[type[LiftbridgeError], str]] = {
    api_pb2.Ack.INCORRECT_OFFSET: (IncorrectOffsetError, "expected offset did not match"),
    api_pb2.Ack.TOO_LARGE: (MessageTooLargeError, "message exceeds max replication size"),
    api_pb2.Ack.ENCRYPTION: (EncryptionError, "encryption failed on partition"),
    api_pb2.Ack.UNKNOWN: (RpcError, "message was not committed (unknown error)"),
}


def ack_error(ack: api_pb2.Ack) -> LiftbridgeError | None:
    """The error an Ack reports in its ``ackError`` field, or None if OK.

    PublishToSubject returns acks unchecked, so its caller needs this too.
    """
    code = ack.ackError
    if code == api_pb2.Ack.OK:
        return None
    cls, text = _ACK_ERRORS.get(code, (RpcError, f"message was not committed (ack error {code})"))
    return cls(text)


def publish_response_error(resp: api_pb2.PublishResponse) -> LiftbridgeError | None:
    """The error a PublishResponse reports, or None for a plain ack.

    ``asyncError`` is checked first: with it the server also sends a dummy
    ack (for old clients) that must not be taken for success.
    """
    if resp.HasField("asyncError"):
        err = resp.asyncError
        code = err.code
        message = err.message
        cls: type[LiftbridgeError]
        if (
            code == api_pb2.PublishAsyncError.BAD_REQUEST
            and "exceeds max replication size" in message
        ) or "maximum payload exceeded" in message:
            # The server reports an Ack TOO_LARGE on PublishAsync as
            # BAD_REQUEST, and a message over NATS's max_payload (1 MiB by
            # default) as INTERNAL "nats: maximum payload exceeded".
            cls, text = MessageTooLargeError, "message too large"
        else:
            cls, text = _ASYNC_ERRORS.get(code, (RpcError, f"publish failed (code {code})"))
        return cls(f"{text}: {message}" if message else text)
    if resp.HasField("ack"):
        return ack_error(resp.ack)
    return None


def correlation_id_of(resp: api_pb2.PublishResponse) -> str:
    """The correlation id a PublishResponse answers.

    With ``asyncError`` it is on the response itself (the ack there is a
    dummy with an empty id); otherwise on the ack, falling back to the
    response field that newer servers fill as well.
    """
    if resp.HasField("asyncError"):
        return resp.correlationId
    return resp.ack.correlationId or resp.correlationId
