"""Tests of pyliftbridge.models, built from real protobuf objects."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from pyliftbridge._pb import api_pb2
from pyliftbridge.errors import NoSuchPartitionError, NoSuchStreamError, ProtocolError
from pyliftbridge.models import (
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

UTC = timezone.utc
# 2023-11-14T22:13:20.123456789Z
NS = 1_700_000_000_123_456_789
DT = datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
FETCHED = datetime(2024, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------- enums


def test_ack_policy_wire_values_match_proto() -> None:
    assert int(AckPolicy.LEADER) == int(api_pb2.LEADER) == 0
    assert int(AckPolicy.ALL) == int(api_pb2.ALL) == 1
    assert int(AckPolicy.NONE) == int(api_pb2.NONE) == 2
    assert [p.name for p in AckPolicy] == ["LEADER", "ALL", "NONE"]


def test_activity_op_wire_values_match_proto() -> None:
    for op in ActivityOp:
        assert op.value == api_pb2.ActivityStreamOp.Value(op.name)
    assert len(ActivityOp) == len(api_pb2.ActivityStreamOp.keys()) == 7
    assert int(ActivityOp.LEAVE_CONSUMER_GROUP) == 6


def test_unknown_enum_values_become_pseudo_members() -> None:
    policy = AckPolicy(9)
    assert isinstance(policy, AckPolicy)
    assert policy == 9
    assert policy.name == "UNKNOWN_9"
    assert policy not in list(AckPolicy)
    assert pickle.loads(pickle.dumps(policy)) == 9
    op = ActivityOp(42)
    assert op.name == "UNKNOWN_42" and op == 42
    with pytest.raises(ValueError):
        AckPolicy("LEADER")  # type: ignore[arg-type]


# ---------------------------------------------------------------- Message


def _wire_message(**overrides: Any) -> api_pb2.Message:
    fields: dict[str, Any] = {
        "offset": 41,
        "key": b"the-key",
        "value": b"payload",
        "timestamp": NS,
        "stream": "orders",
        "partition": 3,
        "subject": "orders.3",
        "replySubject": "_INBOX.reply",
        "headers": {"subject": b"orders.wire", "reply": b"", "trace": b"\x00\x01"},
        "ackInbox": "_INBOX.acks",
        "correlationId": "cid-1",
        "ackPolicy": api_pb2.ALL,
    }
    fields.update(overrides)
    return api_pb2.Message(**fields)


def test_message_from_proto_reads_every_field() -> None:
    msg = Message.from_proto(_wire_message())
    assert msg.stream == "orders"
    assert msg.partition == 3
    assert msg.offset == 41
    assert msg.key == b"the-key"
    assert msg.value == b"payload"
    assert msg.timestamp == DT
    assert msg.timestamp.tzinfo is not None
    assert msg.timestamp.utcoffset() == timedelta(0)
    assert msg.timestamp_ns == NS
    assert msg.reply_subject == "_INBOX.reply"
    assert msg.ack_inbox == "_INBOX.acks"
    assert msg.correlation_id == "cid-1"
    assert msg.ack_policy is AckPolicy.ALL
    assert dict(msg.headers) == {
        "subject": b"orders.wire",
        "reply": b"",
        "trace": b"\x00\x01",
    }


def test_message_subject_is_field_7_not_the_subject_header() -> None:
    msg = Message.from_proto(_wire_message(subject="field-seven"))
    assert msg.subject == "field-seven"
    assert msg.headers["subject"] == b"orders.wire"


def test_message_empty_key_is_none_and_leader_policy() -> None:
    msg = Message.from_proto(_wire_message(key=b"", ackPolicy=api_pb2.LEADER))
    assert msg.key is None
    assert msg.ack_policy is AckPolicy.LEADER


def test_message_unknown_ack_policy_does_not_fail() -> None:
    msg = Message.from_proto(_wire_message(ackPolicy=7))
    assert msg.ack_policy == 7
    assert isinstance(msg.ack_policy, AckPolicy)


def test_message_header_map_entry_without_value_field() -> None:
    # A map entry whose value field is absent on the wire (how Go encodes an
    # empty value): field 9, entry {1: "reply"} with no field 2.
    # Then field 2 (key) = b"k".
    entry = b"\x0a\x05reply"
    data = b"\x4a" + bytes([len(entry)]) + entry + b"\x12\x01k"
    msg = Message.from_proto(api_pb2.Message.FromString(data))
    assert dict(msg.headers) == {"reply": b""}
    assert msg.key == b"k"


def test_message_headers_are_read_only() -> None:
    msg = Message.from_proto(_wire_message())
    with pytest.raises(TypeError):
        msg.headers["x"] = b"y"  # type: ignore[index]


def test_message_is_frozen_hashable_and_comparable() -> None:
    a = Message.from_proto(_wire_message())
    b = Message.from_proto(_wire_message())
    assert a == b
    assert hash(a) == hash(b)
    assert a != Message.from_proto(_wire_message(offset=42))
    assert a != Message.from_proto(_wire_message(headers={"other": b""}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.offset = 1  # type: ignore[misc]


def test_message_constructed_by_hand_copies_headers() -> None:
    headers = {"a": b"1"}
    msg = Message(
        stream="s",
        partition=0,
        offset=0,
        key=None,
        value=b"",
        timestamp=DT,
        timestamp_ns=NS,
        subject="s",
        reply_subject="",
        headers=headers,
    )
    headers["b"] = b"2"
    assert dict(msg.headers) == {"a": b"1"}
    with pytest.raises(TypeError):
        msg.headers["c"] = b"3"  # type: ignore[index]
    assert msg == dataclasses.replace(msg)


def test_message_from_proto_subclass_uses_constructor() -> None:
    class Sub(Message):
        pass

    msg = Sub.from_proto(_wire_message())
    assert type(msg) is Sub
    assert msg.offset == 41


def test_message_negative_and_zero_timestamps() -> None:
    assert Message.from_proto(_wire_message(timestamp=0)).timestamp == datetime(
        1970, 1, 1, tzinfo=UTC
    )
    before = Message.from_proto(_wire_message(timestamp=-1_500))
    assert before.timestamp == datetime(1969, 12, 31, 23, 59, 59, 999998, tzinfo=UTC)


# ---------------------------------------------------------------- Ack


def test_ack_from_proto() -> None:
    pb = api_pb2.Ack(
        stream="orders",
        partitionSubject="orders.2",
        msgSubject="orders.2",
        offset=99,
        ackInbox="_INBOX.x",
        correlationId="cid",
        ackPolicy=api_pb2.ALL,
        receptionTimestamp=NS,
        commitTimestamp=NS + 1_000,
    )
    ack = Ack.from_proto(pb, 2)
    assert ack.stream == "orders"
    assert ack.partition == 2
    assert ack.partition_subject == "orders.2"
    assert ack.message_subject == "orders.2"
    assert ack.offset == 99
    assert ack.ack_inbox == "_INBOX.x"
    assert ack.correlation_id == "cid"
    assert ack.ack_policy is AckPolicy.ALL
    assert ack.reception_timestamp == DT
    assert ack.commit_timestamp == DT + timedelta(microseconds=1)
    assert ack.reception_timestamp_ns == NS
    assert ack.commit_timestamp_ns == NS + 1_000


def test_ack_zero_timestamps_are_none() -> None:
    ack = Ack.from_proto(api_pb2.Ack(stream="s", offset=0), 0)
    assert ack.reception_timestamp is None
    assert ack.commit_timestamp is None
    assert ack.reception_timestamp_ns == 0
    assert ack.ack_policy is AckPolicy.LEADER


# ---------------------------------------------------------------- metadata


def _broker(bid: str, host: str = "10.0.0.1", port: int = 9292) -> api_pb2.Broker:
    return api_pb2.Broker(id=bid, host=host, port=port, partitionCount=4, leaderCount=2)


def _partition(pid: int, leader: str = "a", **kw: Any) -> api_pb2.PartitionMetadata:
    fields: dict[str, Any] = {
        "id": pid,
        "leader": leader,
        "replicas": ["a", "b"],
        "isr": ["a"],
        "highWatermark": 10,
        "newestOffset": 11,
    }
    fields.update(kw)
    return api_pb2.PartitionMetadata(**fields)


def _response() -> api_pb2.FetchMetadataResponse:
    resp = api_pb2.FetchMetadataResponse(
        brokers=[_broker("a", "10.0.0.1"), _broker("b", "::1", 9393)],
    )
    foo = resp.streamMetadata.add(name="foo", subject="foo.subj", creationTimestamp=NS)
    foo.partitions[1].CopyFrom(_partition(1, leader="b"))
    foo.partitions[0].CopyFrom(_partition(0))
    resp.streamMetadata.add(name="gone", error=api_pb2.StreamMetadata.UNKNOWN_STREAM)
    resp.groupMetadata.add(groupId="g1", coordinator="a", epoch=7)
    resp.groupMetadata.add(groupId="g2", error=api_pb2.ConsumerGroupMetadata.UNKNOWN_GROUP)
    return resp


def test_broker_info_address_ipv4_ipv6() -> None:
    assert BrokerInfo.from_proto(_broker("a", "10.0.0.1")).address == "10.0.0.1:9292"
    assert BrokerInfo.from_proto(_broker("b", "::1", 9393)).address == "[::1]:9393"
    info = BrokerInfo.from_proto(_broker("a"))
    assert (info.id, info.partition_count, info.leader_count) == ("a", 4, 2)


def test_partition_info_resolves_brokers_and_keeps_readonly() -> None:
    brokers = {"a": BrokerInfo("a", "h", 1, 0, 0)}
    pb = _partition(
        5,
        leader="a",
        replicas=["a", "dead"],
        isr=["a"],
        paused=True,
        readonly=True,
        messagesReceivedTimestamps=api_pb2.PartitionEventTimestamps(
            firstTimestamp=NS, latestTimestamp=NS + 2_000
        ),
        readonlyTimestamps=api_pb2.PartitionEventTimestamps(firstTimestamp=NS),
    )
    info = PartitionInfo.from_proto(pb, "foo", brokers)
    assert info.stream == "foo"
    assert info.id == 5
    assert info.leader == brokers["a"]
    assert info.replicas == (brokers["a"], BrokerInfo("dead", "", 0, 0, 0))
    assert info.isr == (brokers["a"],)
    assert info.high_watermark == 10
    assert info.newest_offset == 11
    assert info.paused is True
    assert info.readonly is True
    assert info.messages_received == EventTimestamps(DT, DT + timedelta(microseconds=2))
    assert info.paused_at == EventTimestamps(None, None)
    assert info.readonly_at == EventTimestamps(DT, None)


def test_partition_info_without_leader_and_unknown_leader() -> None:
    assert PartitionInfo.from_proto(_partition(0, leader=""), "s", {}).leader is None
    leader = PartitionInfo.from_proto(_partition(0, leader="zz"), "s", {}).leader
    assert leader == BrokerInfo("zz", "", 0, 0, 0)


def test_fetch_partition_metadata_response_keeps_readonly() -> None:
    resp = api_pb2.FetchPartitionMetadataResponse(metadata=_partition(0, readonly=True))
    wire = api_pb2.FetchPartitionMetadataResponse.FromString(resp.SerializeToString())
    assert PartitionInfo.from_proto(wire.metadata, "s", {}).readonly is True


def test_metadata_from_proto() -> None:
    md = Metadata.from_proto(_response(), FETCHED)
    assert md.fetched_at == FETCHED
    assert [b.id for b in md.brokers] == ["a", "b"]
    assert md.addresses() == ["10.0.0.1:9292", "[::1]:9393"]
    assert md.broker("b") == BrokerInfo("b", "::1", 9393, 4, 2)
    assert md.broker("nope") is None
    assert list(md.streams) == ["foo"]
    assert md.unknown_streams == frozenset({"gone"})
    foo = md.stream("foo")
    assert foo.name == "foo"
    assert foo.subject == "foo.subj"
    assert foo.creation_time == DT
    assert list(foo.partitions) == [0, 1]
    assert foo.partition(1).leader == md.broker("b")
    assert md.partition_count("foo") == 2
    assert md.partition_count("gone") == 0
    assert md.groups == {"g1": ConsumerGroupInfo("g1", "a", 7)}
    assert md.unknown_groups == frozenset({"g2"})


def test_metadata_lookups_raise_typed_errors() -> None:
    md = Metadata.from_proto(_response(), FETCHED)
    with pytest.raises(NoSuchStreamError, match="gone"):
        md.stream("gone")
    with pytest.raises(NoSuchPartitionError, match="no partition 2"):
        md.stream("foo").partition(2)


def test_metadata_mappings_are_read_only() -> None:
    md = Metadata.from_proto(_response(), FETCHED)
    with pytest.raises(TypeError):
        md.streams["x"] = md.stream("foo")  # type: ignore[index]
    with pytest.raises(TypeError):
        md.stream("foo").partitions[9] = md.stream("foo").partition(0)  # type: ignore[index]
    with pytest.raises(TypeError):
        md.groups["x"] = ConsumerGroupInfo("x", "a", 0)  # type: ignore[index]
    assert isinstance(md.brokers, tuple)
    hash(md)


def test_metadata_constructor_copies_plain_dicts() -> None:
    streams = {"s": StreamInfo("s", "s")}
    md = Metadata(
        brokers=[BrokerInfo("a", "h", 1)],  # type: ignore[arg-type]
        streams=streams,
        groups={},
        fetched_at=FETCHED,
    )
    streams["t"] = StreamInfo("t", "t")
    assert list(md.streams) == ["s"]
    assert md.brokers == (BrokerInfo("a", "h", 1),)
    assert md.broker("a") == BrokerInfo("a", "h", 1)


def test_stream_info_creation_time_zero_is_none() -> None:
    info = StreamInfo.from_proto(api_pb2.StreamMetadata(name="s", subject="x"), {})
    assert info.creation_time is None
    assert info.partitions == {}


def test_merged_replaces_adds_and_drops() -> None:
    old = Metadata.from_proto(_response(), FETCHED)
    later = FETCHED + timedelta(seconds=5)
    partial = api_pb2.FetchMetadataResponse(
        brokers=[_broker("a", "10.0.0.9"), _broker("c", "10.0.0.3")],
    )
    bar = partial.streamMetadata.add(name="bar", subject="bar")
    bar.partitions[0].CopyFrom(_partition(0, leader="c", replicas=["c"], isr=["c"]))
    partial.groupMetadata.add(groupId="g1", error=api_pb2.ConsumerGroupMetadata.UNKNOWN_GROUP)
    partial.groupMetadata.add(groupId="g3", coordinator="c", epoch=1)
    new = Metadata.from_proto(partial, later)

    merged = old.merged(new)
    assert merged.fetched_at == later
    assert [b.id for b in merged.brokers] == ["a", "c"]
    assert set(merged.streams) == {"foo", "bar"}
    # "foo" came from the old snapshot; its brokers follow the new list.
    foo = merged.stream("foo")
    assert foo.partition(0).leader == BrokerInfo("a", "10.0.0.9", 9292, 4, 2)
    assert foo.partition(1).leader == BrokerInfo("b", "", 0, 0, 0)
    assert merged.stream("bar").partition(0).leader == merged.broker("c")
    assert set(merged.groups) == {"g3"}
    assert merged.unknown_groups == frozenset({"g1", "g2"})
    assert merged.unknown_streams == frozenset({"gone"})
    # The inputs are untouched.
    assert set(old.streams) == {"foo"}
    assert old.stream("foo").partition(0).leader == BrokerInfo("a", "10.0.0.1", 9292, 4, 2)


def test_merged_drops_streams_reported_unknown_and_forgets_resurrected() -> None:
    old = Metadata.from_proto(_response(), FETCHED)
    partial = api_pb2.FetchMetadataResponse(brokers=[_broker("a"), _broker("b")])
    partial.streamMetadata.add(name="foo", error=api_pb2.StreamMetadata.UNKNOWN_STREAM)
    partial.streamMetadata.add(name="gone", subject="gone")
    merged = old.merged(Metadata.from_proto(partial, FETCHED))
    assert list(merged.streams) == ["gone"]
    assert merged.unknown_streams == frozenset({"foo"})
    assert merged.partition_count("foo") == 0


def test_merged_with_no_brokers_keeps_ours_and_resolves_against_them() -> None:
    old = Metadata.from_proto(_response(), FETCHED)
    partial = api_pb2.FetchMetadataResponse()
    bar = partial.streamMetadata.add(name="bar", subject="bar")
    bar.partitions[0].CopyFrom(_partition(0, leader="b"))
    merged = old.merged(Metadata.from_proto(partial, FETCHED))
    assert merged.brokers == old.brokers
    assert merged.stream("bar").partition(0).leader == old.broker("b")
    assert merged.stream("foo") == old.stream("foo")


# ---------------------------------------------------------------- activity


def _activity_message(event: api_pb2.ActivityStreamEvent, offset: int = 12) -> Message:
    wire = api_pb2.Message(
        offset=offset, value=event.SerializeToString(), stream="__activity", timestamp=NS
    )
    return Message.from_proto(wire)


def test_activity_create_stream() -> None:
    event = api_pb2.ActivityStreamEvent(
        id=5,
        op=api_pb2.CREATE_STREAM,
        createStreamOp=api_pb2.CreateStreamOp(stream="foo", partitions=[0, 1, 2]),
    )
    got = ActivityEvent.from_message(_activity_message(event, offset=3))
    assert got == ActivityEvent(
        id=5, op=ActivityOp.CREATE_STREAM, stream="foo", partitions=(0, 1, 2), offset=3
    )
    assert got.group_id is None and got.consumer_id is None


def test_activity_delete_pause_resume_readonly() -> None:
    cases: list[tuple[api_pb2.ActivityStreamEvent, dict[str, Any]]] = [
        (
            api_pb2.ActivityStreamEvent(
                id=1, op=api_pb2.DELETE_STREAM, deleteStreamOp=api_pb2.DeleteStreamOp(stream="d")
            ),
            {"stream": "d"},
        ),
        (
            api_pb2.ActivityStreamEvent(
                id=2,
                op=api_pb2.PAUSE_STREAM,
                pauseStreamOp=api_pb2.PauseStreamOp(stream="p", partitions=[1], resumeAll=True),
            ),
            {"stream": "p", "partitions": (1,), "resume_all": True},
        ),
        (
            api_pb2.ActivityStreamEvent(
                id=3,
                op=api_pb2.RESUME_STREAM,
                resumeStreamOp=api_pb2.ResumeStreamOp(stream="r", partitions=[0, 4]),
            ),
            {"stream": "r", "partitions": (0, 4)},
        ),
        (
            api_pb2.ActivityStreamEvent(
                id=4,
                op=api_pb2.SET_STREAM_READONLY,
                setStreamReadonlyOp=api_pb2.SetStreamReadonlyOp(
                    stream="ro", partitions=[2], readonly=True
                ),
            ),
            {"stream": "ro", "partitions": (2,), "readonly": True},
        ),
    ]
    for pb, expected in cases:
        got = ActivityEvent.from_message(_activity_message(pb))
        assert got == ActivityEvent(id=pb.id, op=ActivityOp(pb.op), offset=12, **expected)


def test_activity_group_events() -> None:
    join = api_pb2.ActivityStreamEvent(
        id=8,
        op=api_pb2.JOIN_CONSUMER_GROUP,
        joinConsumerGroupOp=api_pb2.JoinConsumerGroupOp(
            groupId="g", consumerId="c1", streams=["a", "b"]
        ),
    )
    got = ActivityEvent.from_message(_activity_message(join))
    assert got.op is ActivityOp.JOIN_CONSUMER_GROUP
    assert (got.group_id, got.consumer_id, got.streams) == ("g", "c1", ("a", "b"))
    assert got.stream is None and got.expired is False

    leave = api_pb2.ActivityStreamEvent(
        id=9,
        op=api_pb2.LEAVE_CONSUMER_GROUP,
        leaveConsumerGroupOp=api_pb2.LeaveConsumerGroupOp(
            groupId="g", consumerId="c1", expired=True
        ),
    )
    got = ActivityEvent.from_message(_activity_message(leave))
    assert (got.op, got.group_id, got.consumer_id, got.expired) == (
        ActivityOp.LEAVE_CONSUMER_GROUP,
        "g",
        "c1",
        True,
    )


def test_activity_delete_of_empty_named_stream_is_still_decoded() -> None:
    # An explicitly present but empty sub-message is still "set".
    pb = api_pb2.ActivityStreamEvent(id=1, op=api_pb2.DELETE_STREAM)
    pb.deleteStreamOp.SetInParent()
    assert ActivityEvent.from_message(_activity_message(pb)).stream == ""


def test_activity_unknown_op_is_passed_through() -> None:
    got = ActivityEvent.from_message(_activity_message(api_pb2.ActivityStreamEvent(id=77, op=99)))
    assert got.id == 77
    assert got.op == 99
    assert got.stream is None and got.partitions == ()


def test_activity_missing_details_is_a_protocol_error() -> None:
    pb = api_pb2.ActivityStreamEvent(id=1, op=api_pb2.PAUSE_STREAM)
    with pytest.raises(ProtocolError, match="pauseStreamOp"):
        ActivityEvent.from_message(_activity_message(pb))


def test_activity_undecodable_value_is_a_protocol_error() -> None:
    msg = Message.from_proto(api_pb2.Message(offset=4, value=b"\xff\xff\xff"))
    with pytest.raises(ProtocolError, match="offset 4"):
        ActivityEvent.from_message(msg)


def test_message_lazy_fields_behave_as_dataclass_fields() -> None:
    import dataclasses

    msg = Message.from_proto(_wire_message())
    again = Message.from_proto(_wire_message())
    # Equality, hashing, repr and replace see timestamp and headers, made on demand.
    assert msg == again and hash(msg) == hash(again)
    assert "timestamp=" in repr(msg) and "headers=" in repr(msg)
    built = Message(**{f.name: getattr(msg, f.name) for f in dataclasses.fields(Message)})
    assert built == msg
    moved = dataclasses.replace(msg, offset=msg.offset + 1)
    assert moved.offset == msg.offset + 1 and moved.timestamp == msg.timestamp
    with pytest.raises(AttributeError):
        msg.not_a_field  # noqa: B018
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.offset = 3  # type: ignore[misc]
