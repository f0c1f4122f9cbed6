"""Tests of pyliftbridge._requests: request building and error mapping."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pyliftbridge._pb import api_pb2
from pyliftbridge._requests import (
    ack_error,
    correlation_id_of,
    create_stream_request,
    map_rpc_error,
    map_subscribe_error,
    partition_of_ack,
    publish_request,
    publish_response_error,
    publish_to_subject_request,
    start_after,
    subscribe_request,
    subscription_ends_normally,
    to_bytes,
)
from pyliftbridge._status import Status, StatusCode
from pyliftbridge.errors import (
    AckTimeoutError,
    CancelledError,
    ConsumerGroupError,
    DeadlineExceededError,
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
    ReadonlyPartitionError,
    RpcError,
    StopPositionReachedError,
    StreamDeletedError,
    StreamExistsError,
    UnavailableError,
    error_from_status,
)
from pyliftbridge.models import AckPolicy

UTC = timezone.utc
NOW = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
NOW_NS = 1_714_564_800_250_000_000 + 123  # NOW plus 123 ns


def test_now_constant_is_consistent() -> None:
    assert NOW.timestamp() == pytest.approx(1_714_564_800.25)


# ---------------------------------------------------------------- to_bytes


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"abc", b"abc"),
        (bytearray(b"abc"), b"abc"),
        (memoryview(b"xabcx")[1:4], b"abc"),
        ("héllo", "héllo".encode()),
        ("", b""),
    ],
)
def test_to_bytes_accepts(value: object, expected: bytes) -> None:
    got = to_bytes(value, "value")  # type: ignore[arg-type]
    assert got == expected
    assert type(got) is bytes


@pytest.mark.parametrize("value", [5, None, 1.5, ["a"], True])
def test_to_bytes_rejects(value: object) -> None:
    with pytest.raises(InvalidArgumentError, match="payload must be bytes") as info:
        to_bytes(value, "payload")  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------- CreateStream

_WRAPPERS = [
    "retentionMaxBytes",
    "retentionMaxMessages",
    "retentionMaxAge",
    "cleanerInterval",
    "segmentMaxBytes",
    "segmentMaxAge",
    "compactMaxGoroutines",
    "compactEnabled",
    "autoPauseTime",
    "autoPauseDisableIfSubscribers",
    "minIsr",
    "optimisticConcurrencyControl",
    "encryption",
]


def test_create_stream_defaults() -> None:
    req = create_stream_request("foo.subj", "foo")
    assert isinstance(req, api_pb2.CreateStreamRequest)
    assert req.subject == "foo.subj"
    assert req.name == "foo"
    assert req.group == ""
    assert req.replicationFactor == 1
    assert req.partitions == 1
    for name in _WRAPPERS:
        assert not req.HasField(name), name


def test_create_stream_all_options_reach_the_wire() -> None:
    req = create_stream_request(
        "s",
        "n",
        group="workers",
        replication_factor=3,
        partitions=8,
        retention_max_bytes=1 << 40,
        retention_max_messages=1000,
        retention_max_age=timedelta(days=1),
        cleaner_interval=timedelta(minutes=5),
        segment_max_bytes=64 << 20,
        segment_max_age=timedelta(hours=1, milliseconds=7),
        compact_max_goroutines=4,
        compact_enabled=True,
        auto_pause_time=timedelta(seconds=30),
        auto_pause_disable_if_subscribers=True,
        min_isr=2,
        optimistic_concurrency_control=True,
        encryption=True,
    )
    wire = api_pb2.CreateStreamRequest.FromString(req.SerializeToString())
    assert wire.group == "workers"
    assert wire.replicationFactor == 3
    assert wire.partitions == 8
    assert wire.retentionMaxBytes.value == 1 << 40
    assert wire.retentionMaxMessages.value == 1000
    assert wire.retentionMaxAge.value == 86_400_000
    assert wire.cleanerInterval.value == 300_000
    assert wire.segmentMaxBytes.value == 64 << 20
    assert wire.segmentMaxAge.value == 3_600_007
    assert wire.compactMaxGoroutines.value == 4
    assert wire.compactEnabled.value is True
    assert wire.autoPauseTime.value == 30_000
    assert wire.autoPauseDisableIfSubscribers.value is True
    assert wire.minIsr.value == 2
    assert wire.optimisticConcurrencyControl.value is True
    assert wire.encryption.value is True


def test_create_stream_false_and_zero_overrides_are_present_on_the_wire() -> None:
    req = create_stream_request(
        "s",
        "n",
        compact_enabled=False,
        encryption=False,
        retention_max_age=timedelta(0),
        retention_max_bytes=0,
        auto_pause_time=timedelta(0),
    )
    wire = api_pb2.CreateStreamRequest.FromString(req.SerializeToString())
    for name in ("compactEnabled", "encryption", "retentionMaxAge", "retentionMaxBytes"):
        assert wire.HasField(name), name
    assert wire.compactEnabled.value is False
    assert wire.retentionMaxAge.value == 0
    assert wire.HasField("autoPauseTime")
    assert not wire.HasField("minIsr")


def test_create_stream_duration_truncates_to_whole_milliseconds() -> None:
    req = create_stream_request("s", "n", retention_max_age=timedelta(microseconds=2_999))
    assert req.retentionMaxAge.value == 2


def test_create_stream_max_replication() -> None:
    assert create_stream_request("s", "n", max_replication=True).replicationFactor == -1
    # It overrides whatever replication_factor says.
    req = create_stream_request("s", "n", max_replication=True, replication_factor=2)
    assert req.replicationFactor == -1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": ""}, "name must not be empty"),
        ({"subject": ""}, "subject must not be empty"),
        ({"name": 5}, "name must be a str"),
        ({"partitions": 0}, "partitions must be >= 1"),
        ({"partitions": True}, "partitions must be an int"),
        ({"partitions": 2.0}, "partitions must be an int"),
        ({"replication_factor": 0}, "replication_factor must be >= 1"),
        ({"replication_factor": -1}, "replication_factor must be >= 1"),
        ({"max_replication": 1}, "max_replication must be a bool"),
        ({"group": 3}, "group must be a str"),
        ({"retention_max_age": timedelta(seconds=-1)}, "retention_max_age must not be negative"),
        ({"cleaner_interval": 5}, "cleaner_interval must be a datetime.timedelta"),
        ({"segment_max_age": 5.0}, "segment_max_age must be a datetime.timedelta"),
        ({"auto_pause_time": timedelta(microseconds=10)}, "at least 1 ms"),
        ({"retention_max_bytes": -1}, "retention_max_bytes must be >= 0"),
        ({"retention_max_messages": True}, "retention_max_messages must be an int"),
        ({"segment_max_bytes": 2**63}, "segment_max_bytes must be <="),
        ({"compact_max_goroutines": 0}, "compact_max_goroutines must be >= 1"),
        ({"min_isr": 2**31}, "min_isr must be <="),
        ({"compact_enabled": 1}, "compact_enabled must be a bool"),
        ({"encryption": "yes"}, "encryption must be a bool"),
    ],
)
def test_create_stream_rejects(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"subject": "s", "name": "n"}
    args.update(kwargs)
    with pytest.raises(InvalidArgumentError, match=match) as info:
        create_stream_request(**args)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------- Subscribe


def _sub(**kwargs: object) -> api_pb2.SubscribeRequest:
    args: dict[str, object] = {"now_ns": NOW_NS}
    args.update(kwargs)
    return subscribe_request("foo", 2, **args)  # type: ignore[arg-type]


def test_subscribe_defaults() -> None:
    req = _sub()
    assert req.stream == "foo"
    assert req.partition == 2
    assert req.startPosition == api_pb2.NEW_ONLY
    assert req.stopPosition == api_pb2.STOP_ON_CANCEL
    assert not req.readISRReplica
    assert not req.resume
    assert not req.HasField("consumer")


@pytest.mark.parametrize(
    ("start_at", "position"),
    [("new", api_pb2.NEW_ONLY), ("earliest", api_pb2.EARLIEST), ("latest", api_pb2.LATEST)],
)
def test_subscribe_named_starts(start_at: str, position: int) -> None:
    assert _sub(start_at=start_at).startPosition == position


def test_subscribe_start_at_offset() -> None:
    req = _sub(start_at=17)
    assert req.startPosition == api_pb2.OFFSET
    assert req.startOffset == 17
    assert _sub(start_at=0).startPosition == api_pb2.OFFSET


def test_subscribe_start_at_datetime_is_unix_ns() -> None:
    req = _sub(start_at=NOW)
    assert req.startPosition == api_pb2.TIMESTAMP
    assert req.startTimestamp == 1_714_564_800_250_000_000
    # The same instant in another zone gives the same timestamp.
    plus2 = NOW.astimezone(timezone(timedelta(hours=2)))
    assert _sub(start_at=plus2).startTimestamp == req.startTimestamp


def test_subscribe_start_at_timedelta_counts_back_from_now() -> None:
    req = _sub(start_at=timedelta(minutes=1, microseconds=1))
    assert req.startPosition == api_pb2.TIMESTAMP
    assert req.startTimestamp == NOW_NS - 60_000_001_000
    assert _sub(start_at=timedelta(0)).startTimestamp == NOW_NS


def test_subscribe_naive_datetime_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="timezone-aware"):
        _sub(start_at=datetime(2024, 1, 1))
    with pytest.raises(InvalidArgumentError, match="timezone-aware"):
        _sub(stop_at=datetime(2024, 1, 1))


def test_subscribe_stop_forms() -> None:
    assert _sub(stop_at=None).stopPosition == api_pb2.STOP_ON_CANCEL
    assert _sub(stop_at="latest").stopPosition == api_pb2.STOP_LATEST
    req = _sub(stop_at=40)
    assert (req.stopPosition, req.stopOffset) == (api_pb2.STOP_OFFSET, 40)
    req = _sub(stop_at=NOW)
    assert (req.stopPosition, req.stopTimestamp) == (
        api_pb2.STOP_TIMESTAMP,
        1_714_564_800_250_000_000,
    )
    req = _sub(stop_at=timedelta(seconds=1))
    assert (req.stopPosition, req.stopTimestamp) == (api_pb2.STOP_TIMESTAMP, NOW_NS - 10**9)


def test_subscribe_stop_in_the_future_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="future"):
        _sub(stop_at=NOW + timedelta(microseconds=1))
    # Exactly now is fine.
    assert _sub(stop_at=NOW, now_ns=1_714_564_800_250_000_000).stopPosition == (
        api_pb2.STOP_TIMESTAMP
    )


def test_subscribe_stop_before_start_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="before start_at"):
        _sub(start_at=10, stop_at=9)
    req = _sub(start_at=10, stop_at=10)
    assert (req.startOffset, req.stopOffset) == (10, 10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"start_at": "oldest"}, "start_at must be"),
        ({"start_at": -1}, "start_at offset must be >= 0"),
        ({"start_at": True}, "start_at must not be a bool"),
        ({"start_at": 1.5}, "start_at must be"),
        ({"start_at": None}, "start_at must be"),
        ({"start_at": timedelta(seconds=-1)}, "must not be negative"),
        ({"stop_at": "earliest"}, "stop_at must be"),
        ({"stop_at": -5}, "stop_at offset must be >= 0"),
        ({"stop_at": False}, "stop_at must not be a bool"),
        ({"stop_at": 2.0}, "stop_at must be"),
        ({"stop_at": timedelta(seconds=-1)}, "must not be negative"),
        ({"read_isr_replica": 1}, "read_isr_replica must be a bool"),
        ({"resume": "yes"}, "resume must be a bool"),
    ],
)
def test_subscribe_rejects(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match) as info:
        _sub(**kwargs)
    assert isinstance(info.value, ValueError)


def test_subscribe_rejects_bad_stream_and_partition() -> None:
    with pytest.raises(InvalidArgumentError, match="partition must be >= 0"):
        subscribe_request("foo", -1, now_ns=NOW_NS)
    with pytest.raises(InvalidArgumentError, match="stream must not be empty"):
        subscribe_request("", 0, now_ns=NOW_NS)


def test_subscribe_flags_and_consumer() -> None:
    req = _sub(read_isr_replica=True, resume=True)
    assert req.readISRReplica and req.resume
    req = _sub(group_id="g", consumer_id="c", group_epoch=12)
    assert req.HasField("consumer")
    assert (req.consumer.groupId, req.consumer.consumerId, req.consumer.groupEpoch) == (
        "g",
        "c",
        12,
    )


def test_subscribe_consumer_rejects() -> None:
    with pytest.raises(InvalidArgumentError, match="together"):
        _sub(group_id="g")
    with pytest.raises(InvalidArgumentError, match="together"):
        _sub(consumer_id="c")
    with pytest.raises(InvalidArgumentError, match="read_isr_replica"):
        _sub(group_id="g", consumer_id="c", read_isr_replica=True)
    with pytest.raises(InvalidArgumentError, match="group_epoch"):
        _sub(group_id="g", consumer_id="c", group_epoch=-1)


# ---------------------------------------------------------------- start_after


def test_start_after_resumes_after_last_offset_keeping_everything_else() -> None:
    original = _sub(
        start_at=timedelta(hours=1),
        stop_at=500,
        read_isr_replica=False,
        resume=True,
        group_id="g",
        consumer_id="c",
        group_epoch=3,
    )
    snapshot = original.SerializeToString()
    again = start_after(original, 41)
    assert again.startPosition == api_pb2.OFFSET
    assert again.startOffset == 42
    assert again.startTimestamp == 0
    assert again.stream == "foo"
    assert again.partition == 2
    assert again.stopPosition == api_pb2.STOP_OFFSET
    assert again.stopOffset == 500
    assert again.resume is True
    assert again.consumer == original.consumer
    # The original request is not modified.
    assert original.SerializeToString() == snapshot
    assert original.startPosition == api_pb2.TIMESTAMP


def test_start_after_from_new_only_and_with_isr_replica() -> None:
    again = start_after(_sub(read_isr_replica=True, stop_at="latest"), -1)
    assert (again.startPosition, again.startOffset) == (api_pb2.OFFSET, 0)
    assert again.readISRReplica is True
    assert again.stopPosition == api_pb2.STOP_LATEST


def test_start_after_stop_offset_reached() -> None:
    request = _sub(start_at=0, stop_at=10)
    assert start_after(request, 9).startOffset == 10
    with pytest.raises(StopPositionReachedError):
        start_after(request, 10)


def test_start_after_rejects_bad_offset() -> None:
    with pytest.raises(InvalidArgumentError):
        start_after(_sub(), -2)


# ---------------------------------------------------------------- Publish


def test_publish_request_defaults() -> None:
    req = publish_request("foo", b"v", correlation_id="cid")
    assert isinstance(req, api_pb2.PublishRequest)
    assert req.stream == "foo"
    assert req.value == b"v"
    assert req.key == b""
    assert req.partition == 0
    assert req.ackPolicy == api_pb2.LEADER
    assert req.correlationId == "cid"
    assert req.expectedOffset == -1
    assert dict(req.headers) == {}
    wire = api_pb2.PublishRequest.FromString(req.SerializeToString())
    assert wire.expectedOffset == -1


def test_publish_request_every_option() -> None:
    req = publish_request(
        "foo",
        memoryview(b"value"),
        key="ключ",
        headers={"a": b"\x00", "b": "text", "empty": b""},
        partition=3,
        ack_policy=AckPolicy.ALL,
        expected_offset=0,
        correlation_id="x",
    )
    assert req.value == b"value"
    assert req.key == "ключ".encode()
    assert dict(req.headers) == {"a": b"\x00", "b": b"text", "empty": b""}
    assert req.partition == 3
    assert req.ackPolicy == api_pb2.ALL
    assert req.expectedOffset == 0
    wire = api_pb2.PublishRequest.FromString(req.SerializeToString())
    assert wire.expectedOffset == 0
    assert dict(wire.headers)["empty"] == b""


def test_publish_request_ack_policy_none_and_plain_int() -> None:
    assert publish_request("s", b"", ack_policy=AckPolicy.NONE, correlation_id="").ackPolicy == 2
    assert publish_request("s", b"", ack_policy=1, correlation_id="").ackPolicy == 1  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stream": ""}, "stream must not be empty"),
        ({"value": 3}, "value must be bytes"),
        ({"value": None}, "value must be bytes"),
        ({"key": 3}, "key must be bytes"),
        ({"headers": {1: b"x"}}, "header names must be str"),
        ({"headers": {"h": 1}}, "header 'h' must be bytes"),
        ({"headers": [("h", b"x")]}, "headers must be a mapping"),
        ({"partition": -1}, "partition must be >= 0"),
        ({"partition": 2**31}, "partition must be <="),
        ({"ack_policy": 7}, "ack_policy must be an AckPolicy"),
        ({"ack_policy": AckPolicy(7)}, "ack_policy must be an AckPolicy"),
        ({"ack_policy": True}, "ack_policy must be an AckPolicy"),
        ({"ack_policy": "ALL"}, "ack_policy must be an AckPolicy"),
        ({"expected_offset": -2}, "expected_offset must be >= -1"),
        ({"expected_offset": True}, "expected_offset must be an int"),
        ({"correlation_id": None}, "correlation_id must be a str"),
    ],
)
def test_publish_request_rejects(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"correlation_id": "c"}
    stream = kwargs.pop("stream", "s")
    value = kwargs.pop("value", b"v")
    args.update(kwargs)
    with pytest.raises(InvalidArgumentError, match=match) as info:
        publish_request(stream, value, **args)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


def test_publish_to_subject_request_copies_headers() -> None:
    req = publish_to_subject_request(
        "orders.*",
        "v",
        key=b"k",
        headers={"trace": "abc", "bin": b"\x01"},
        ack_policy=AckPolicy.ALL,
        correlation_id="cid",
    )
    assert isinstance(req, api_pb2.PublishToSubjectRequest)
    wire = api_pb2.PublishToSubjectRequest.FromString(req.SerializeToString())
    assert wire.subject == "orders.*"
    assert wire.value == b"v"
    assert wire.key == b"k"
    assert dict(wire.headers) == {"trace": b"abc", "bin": b"\x01"}
    assert wire.ackPolicy == api_pb2.ALL
    assert wire.correlationId == "cid"


def test_publish_to_subject_request_defaults_and_rejects() -> None:
    req = publish_to_subject_request("s", b"v", correlation_id="c")
    assert (req.key, dict(req.headers), req.ackPolicy) == (b"", {}, api_pb2.LEADER)
    with pytest.raises(InvalidArgumentError, match="subject must not be empty"):
        publish_to_subject_request("", b"v", correlation_id="c")
    with pytest.raises(InvalidArgumentError, match="correlation_id"):
        publish_to_subject_request("s", b"v", correlation_id=5)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="ack_policy"):
        publish_to_subject_request("s", b"v", ack_policy=3, correlation_id="c")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stream_subject", "message_subject", "partition"),
    [
        ("orders", "orders", 0),
        ("orders", "orders.1", 1),
        ("orders", "orders.17", 17),
        # A stream subject ending in a number token is no partition number.
        ("metrics.2024", "metrics.2024", 0),
        ("metrics.2024", "metrics.2024.3", 3),
        # Wildcard streams: partition N listens on "<pattern>.N".
        ("logs.*", "logs.web", 0),
        ("logs.*", "logs.7", 0),
        ("logs.*", "logs.web.2", 2),
        ("a.*.c", "a.b.c.4", 4),
        ("logs.>", "logs.web.2", 0),
        # Not a partition subject of this stream.
        ("orders", "orders.01", 0),
        ("orders", "orders.x", 0),
        ("orders", "other.1", 0),
        ("orders", "orders.\u0661", 0),
    ],
)
def test_partition_of_ack(stream_subject: str, message_subject: str, partition: int) -> None:
    assert partition_of_ack(stream_subject, message_subject) == partition


# ---------------------------------------------------------------- RPC errors


def _err(code: StatusCode, message: str = "server says no") -> LiftbridgeError:
    return error_from_status(Status(code, message))


RPC_CASES = [
    ("CreateStream", StatusCode.ALREADY_EXISTS, "stream already exists", StreamExistsError),
    (
        "CreateStream",
        StatusCode.FAILED_PRECONDITION,
        "Failed on preconditions for stream's encryption handler: key not set",
        EncryptionError,
    ),
    ("CreateStream", StatusCode.FAILED_PRECONDITION, "node is not the leader", RpcError),
    ("CreateStream", StatusCode.INVALID_ARGUMENT, "Subject is invalid", InvalidArgumentError),
    ("DeleteStream", StatusCode.NOT_FOUND, "stream does not exist", NoSuchStreamError),
    ("PauseStream", StatusCode.NOT_FOUND, "stream not found", NoSuchPartitionError),
    ("SetStreamReadonly", StatusCode.NOT_FOUND, "partition not found", NoSuchPartitionError),
    ("FetchPartitionMetadata", StatusCode.NOT_FOUND, "partition not found", NoSuchPartitionError),
    (
        "FetchPartitionMetadata",
        StatusCode.FAILED_PRECONDITION,
        "The request should be sent to partition leader",
        NotLeaderError,
    ),
    (
        "SetCursor",
        StatusCode.FAILED_PRECONDITION,
        "Server not cursor partition leader",
        NotLeaderError,
    ),
    (
        "FetchCursor",
        StatusCode.FAILED_PRECONDITION,
        "Server not leader for cursors",
        NotLeaderError,
    ),
    ("PublishToSubject", StatusCode.DEADLINE_EXCEEDED, "nats: timeout", AckTimeoutError),
    (
        "PublishToSubject",
        StatusCode.INVALID_ARGUMENT,
        "message exceeds max replication size",
        MessageTooLargeError,
    ),
    ("PublishToSubject", StatusCode.UNKNOWN, "incorrect expected offset", IncorrectOffsetError),
    ("Publish", StatusCode.DEADLINE_EXCEEDED, "nats: timeout", AckTimeoutError),
    ("Publish", StatusCode.NOT_FOUND, "no such stream: foo", NoSuchPartitionError),
    ("Publish", StatusCode.FAILED_PRECONDITION, "readonly partition: 0", ReadonlyPartitionError),
    ("Publish", StatusCode.INTERNAL, "encryption failed on partition", EncryptionError),
    ("Publish", StatusCode.UNKNOWN, "incorrect expected offset", IncorrectOffsetError),
    ("Publish", StatusCode.INVALID_ARGUMENT, "exceeds max replication size", MessageTooLargeError),
    ("FetchMetadata", StatusCode.INTERNAL, "no known metadata leader", NoKnownLeaderError),
    ("CreateStream", StatusCode.INTERNAL, "no known metadata leader", NoKnownLeaderError),
    ("DeleteStream", StatusCode.PERMISSION_DENIED, "nope", PermissionDeniedError),
    ("FetchMetadata", StatusCode.UNAUTHENTICATED, "who are you", PermissionDeniedError),
    (
        "CreateStream",
        StatusCode.UNKNOWN,
        "The client is not authorized to call CreateStream on resource foo",
        PermissionDeniedError,
    ),
    (
        "FetchConsumerGroupAssignments",
        StatusCode.FAILED_PRECONDITION,
        "broker is not the consumer group coordinator",
        ConsumerGroupError,
    ),
    (
        "FetchConsumerGroupAssignments",
        StatusCode.NOT_FOUND,
        "consumer group does not exist",
        ConsumerGroupError,
    ),
    (
        "LeaveConsumerGroup",
        StatusCode.NOT_FOUND,
        "consumer group does not exist",
        ConsumerGroupError,
    ),
    ("JoinConsumerGroup", StatusCode.FAILED_PRECONDITION, "raft: not leader", RpcError),
    # Codes that mean nothing special for the method stay as they were.
    ("DeleteStream", StatusCode.ALREADY_EXISTS, "odd", RpcError),
    ("PublishToSubject", StatusCode.NOT_FOUND, "odd", RpcError),
    ("FetchMetadata", StatusCode.NOT_FOUND, "odd", RpcError),
    ("SetCursor", StatusCode.INTERNAL, "Cursors stream does not exist", RpcError),
    ("CreateStream", StatusCode.UNAVAILABLE, "connection reset", UnavailableError),
    ("PauseStream", StatusCode.CANCELLED, "", CancelledError),
    ("FetchMetadata", StatusCode.DEADLINE_EXCEEDED, "", DeadlineExceededError),
]


@pytest.mark.parametrize(("method", "code", "message", "expected"), RPC_CASES)
def test_map_rpc_error(
    method: str, code: StatusCode, message: str, expected: type[LiftbridgeError]
) -> None:
    original = _err(code, message)
    got = map_rpc_error(method, original)
    assert type(got) is expected
    assert got.status == original.status
    assert got.code is code
    assert message in str(got)
    if type(original) is expected:
        assert got is original


def test_map_rpc_error_accepts_full_method_path() -> None:
    got = map_rpc_error("/proto.API/CreateStream", _err(StatusCode.ALREADY_EXISTS))
    assert isinstance(got, StreamExistsError)


def test_map_rpc_error_without_status_is_unchanged() -> None:
    local = UnavailableError("connection refused")
    assert map_rpc_error("CreateStream", local) is local


def test_mapped_errors_keep_class_flags() -> None:
    got = map_rpc_error("FetchPartitionMetadata", _err(StatusCode.FAILED_PRECONDITION))
    assert got.retryable
    timeout = map_rpc_error("PublishToSubject", _err(StatusCode.DEADLINE_EXCEEDED))
    assert isinstance(timeout, TimeoutError)


# ---------------------------------------------------------------- subscribe errors

HANDSHAKE_CASES = [
    (StatusCode.NOT_FOUND, "No such partition", NoSuchPartitionError),
    (StatusCode.FAILED_PRECONDITION, "Server not partition leader", NotLeaderError),
    (
        StatusCode.FAILED_PRECONDITION,
        "Consumer is not currently assigned this partition",
        ConsumerGroupError,
    ),
    (StatusCode.RESOURCE_EXHAUSTED, "Stream is empty", StopPositionReachedError),
    (StatusCode.RESOURCE_EXHAUSTED, "End of readonly partition", EndOfReadonlyPartitionError),
    (StatusCode.INVALID_ARGUMENT, "Stop offset is before start offset", InvalidArgumentError),
    (
        StatusCode.INTERNAL,
        "Failed to resume stream: no known metadata leader",
        NoKnownLeaderError,
    ),
    (StatusCode.PERMISSION_DENIED, "no", PermissionDeniedError),
    (StatusCode.INTERNAL, "Failed to create stream reader", RpcError),
]

MIDSTREAM_CASES = [
    (StatusCode.NOT_FOUND, "commit log was deleted", StreamDeletedError),
    (StatusCode.FAILED_PRECONDITION, "commit log was closed", PartitionPausedError),
    (StatusCode.RESOURCE_EXHAUSTED, "End of readonly partition", EndOfReadonlyPartitionError),
    (StatusCode.RESOURCE_EXHAUSTED, "Stop offset reached", StopPositionReachedError),
    (StatusCode.RESOURCE_EXHAUSTED, "something new", StopPositionReachedError),
    (StatusCode.INTERNAL, "commit log was closed", RpcError),
    (StatusCode.UNAVAILABLE, "connection lost", UnavailableError),
]


@pytest.mark.parametrize(("code", "message", "expected"), HANDSHAKE_CASES)
def test_map_subscribe_error_handshake(
    code: StatusCode, message: str, expected: type[LiftbridgeError]
) -> None:
    original = _err(code, message)
    got = map_subscribe_error(original, handshake=True)
    assert type(got) is expected
    assert got.status == original.status
    assert message in str(got)


@pytest.mark.parametrize(("code", "message", "expected"), MIDSTREAM_CASES)
def test_map_subscribe_error_midstream(
    code: StatusCode, message: str, expected: type[LiftbridgeError]
) -> None:
    original = _err(code, message)
    got = map_subscribe_error(original, handshake=False)
    assert type(got) is expected
    assert got.status == original.status


def test_map_subscribe_error_phases_differ() -> None:
    assert isinstance(
        map_subscribe_error(_err(StatusCode.NOT_FOUND), handshake=True), NoSuchPartitionError
    )
    assert isinstance(
        map_subscribe_error(_err(StatusCode.NOT_FOUND), handshake=False), StreamDeletedError
    )


def test_map_subscribe_error_without_status_is_unchanged() -> None:
    local = UnavailableError("reset")
    assert map_subscribe_error(local, handshake=False) is local


def test_subscription_ends_normally() -> None:
    assert subscription_ends_normally(EndOfReadonlyPartitionError("x"))
    assert subscription_ends_normally(StopPositionReachedError("x"))
    assert not subscription_ends_normally(ReadonlyPartitionError("x"))
    assert not subscription_ends_normally(StreamDeletedError("x"))
    assert not subscription_ends_normally(UnavailableError("x"))
    assert not subscription_ends_normally(ValueError("x"))


# ---------------------------------------------------------------- publish responses

ASYNC_CASES = [
    (api_pb2.PublishAsyncError.NOT_FOUND, "no such partition: 9", NoSuchPartitionError),
    (api_pb2.PublishAsyncError.READONLY, "readonly partition: 0", ReadonlyPartitionError),
    (api_pb2.PublishAsyncError.INCORRECT_OFFSET, "incorrect expected offset", IncorrectOffsetError),
    (
        api_pb2.PublishAsyncError.ENCRYPTION_FAILED,
        "encryption failed on partition",
        EncryptionError,
    ),
    (
        api_pb2.PublishAsyncError.PERMISSION_DENIED,
        "The client is not authorized to call Publish",
        PermissionDeniedError,
    ),
    (
        api_pb2.PublishAsyncError.BAD_REQUEST,
        "stream with concurrency control must have AckPolicy set",
        InvalidArgumentError,
    ),
    (
        api_pb2.PublishAsyncError.BAD_REQUEST,
        "message exceeds max replication size",
        MessageTooLargeError,
    ),
    (api_pb2.PublishAsyncError.INTERNAL, "failed to publish to NATS", RpcError),
    (api_pb2.PublishAsyncError.UNKNOWN, "unknown error", RpcError),
    (42, "from the future", RpcError),
]


@pytest.mark.parametrize(("code", "message", "expected"), ASYNC_CASES)
def test_publish_response_async_error(
    code: int, message: str, expected: type[LiftbridgeError]
) -> None:
    # As the server sends it: correlation id on the response, a dummy ack.
    resp = api_pb2.PublishResponse(
        correlationId="cid-7",
        ack=api_pb2.Ack(correlationId=""),
        asyncError=api_pb2.PublishAsyncError(code=code, message=message),
    )
    resp = api_pb2.PublishResponse.FromString(resp.SerializeToString())
    error = publish_response_error(resp)
    assert type(error) is expected
    assert message in str(error)
    assert correlation_id_of(resp) == "cid-7"


ACK_CASES = [
    (api_pb2.Ack.INCORRECT_OFFSET, IncorrectOffsetError),
    (api_pb2.Ack.TOO_LARGE, MessageTooLargeError),
    (api_pb2.Ack.ENCRYPTION, EncryptionError),
    (api_pb2.Ack.UNKNOWN, RpcError),
    (17, RpcError),
]


@pytest.mark.parametrize(("ack_code", "expected"), ACK_CASES)
def test_publish_response_ack_error(ack_code: int, expected: type[LiftbridgeError]) -> None:
    resp = api_pb2.PublishResponse(ack=api_pb2.Ack(correlationId="c1", ackError=ack_code))
    error = publish_response_error(resp)
    assert type(error) is expected
    assert str(error)
    assert type(ack_error(resp.ack)) is expected
    assert correlation_id_of(resp) == "c1"


def test_publish_response_ok() -> None:
    resp = api_pb2.PublishResponse(
        correlationId="c2", ack=api_pb2.Ack(correlationId="c2", offset=5)
    )
    assert publish_response_error(resp) is None
    assert ack_error(resp.ack) is None
    assert correlation_id_of(resp) == "c2"


def test_publish_response_empty() -> None:
    # Unary Publish with AckPolicy NONE (or no deadline) answers with nothing.
    resp = api_pb2.PublishResponse()
    assert publish_response_error(resp) is None
    assert correlation_id_of(resp) == ""


def test_correlation_id_prefers_ack_then_response() -> None:
    only_response = api_pb2.PublishResponse(correlationId="r", ack=api_pb2.Ack())
    assert correlation_id_of(only_response) == "r"
    both = api_pb2.PublishResponse(correlationId="r", ack=api_pb2.Ack(correlationId="a"))
    assert correlation_id_of(both) == "a"
    # With an async error the ack (a dummy) is ignored even if it has an id.
    err = api_pb2.PublishResponse(
        correlationId="r",
        ack=api_pb2.Ack(correlationId="a"),
        asyncError=api_pb2.PublishAsyncError(code=api_pb2.PublishAsyncError.NOT_FOUND),
    )
    assert correlation_id_of(err) == "r"


def test_async_error_without_message_still_explains() -> None:
    resp = api_pb2.PublishResponse(
        asyncError=api_pb2.PublishAsyncError(code=api_pb2.PublishAsyncError.READONLY)
    )
    error = publish_response_error(resp)
    assert isinstance(error, ReadonlyPartitionError)
    assert "readonly" in str(error)
