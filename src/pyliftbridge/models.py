"""Immutable, typed views of what Liftbridge sends back.

Everything here is a frozen dataclass built from a protobuf message by a
``from_proto`` class method. The protobuf objects never leak out of the
library: they are mutable, carry wire names (``msgSubject``) and use protobuf
defaults (``0``, ``""``) where Python code wants ``None``.

Mappings (headers, partitions, streams, groups) are read-only
(:class:`types.MappingProxyType`); sequences are tuples. Mapping fields take
no part in ``hash()`` (a mapping proxy is unhashable) but do in ``==``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any

from google.protobuf.message import DecodeError

from ._address import format_address
from ._pb import api_pb2
from ._time import datetime_from_ns, optional_datetime_from_ns
from .errors import NoSuchPartitionError, NoSuchStreamError, ProtocolError

__all__ = [
    "Ack",
    "AckPolicy",
    "ActivityEvent",
    "ActivityOp",
    "BrokerInfo",
    "ConsumerGroupInfo",
    "EventTimestamps",
    "Message",
    "Metadata",
    "PartitionInfo",
    "StreamInfo",
]

_EMPTY_MAPPING: Mapping[Any, Any] = MappingProxyType({})


def _empty_mapping() -> Mapping[Any, Any]:
    # dataclasses refuse an unhashable default; a factory returning the shared
    # empty proxy is equivalent (it can never be mutated).
    return _EMPTY_MAPPING


def _read_only(mapping: Mapping[Any, Any]) -> Mapping[Any, Any]:
    # A proxy over a private copy: neither the caller nor anyone holding the
    # original dict can change the model afterwards.
    return MappingProxyType(dict(mapping))


def _unknown_member(cls: type[enum.IntEnum], value: object) -> Any:
    """Build a pseudo-member for a wire value newer than this client.

    proto3 enums are open: a newer server (or another client) may send a value
    this version does not know. Failing the whole message for that would be
    worse than passing the number through, so ``cls(7)`` yields an instance
    named ``UNKNOWN_7`` that compares equal to 7 but is not a listed member.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    member = int.__new__(cls, value)
    member._name_ = f"UNKNOWN_{value}"
    member._value_ = value
    return member


class AckPolicy(enum.IntEnum):
    """When the server acknowledges a published message (wire values).

    Values unknown to this version (from a newer peer) become pseudo-members
    named ``UNKNOWN_<n>`` instead of raising; they are never sent by this client.
    """

    LEADER = 0
    """Ack once the partition leader has stored the message (the default)."""
    ALL = 1
    """Ack once every in-sync replica has stored the message."""
    NONE = 2
    """Do not ack at all (fire and forget)."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        return _unknown_member(cls, value)


class ActivityOp(enum.IntEnum):
    """Kind of event on the ``__activity`` stream (wire values).

    Values unknown to this version become pseudo-members named ``UNKNOWN_<n>``.
    """

    CREATE_STREAM = 0
    """A stream was created."""
    DELETE_STREAM = 1
    """A stream was deleted."""
    PAUSE_STREAM = 2
    """Partitions of a stream were paused."""
    RESUME_STREAM = 3
    """Partitions of a stream were resumed."""
    SET_STREAM_READONLY = 4
    """Partitions of a stream were made readonly, or writable again."""
    JOIN_CONSUMER_GROUP = 5
    """A consumer joined a consumer group."""
    LEAVE_CONSUMER_GROUP = 6
    """A consumer left a consumer group, or was expired from it."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        return _unknown_member(cls, value)


# ---------------------------------------------------------------------------
# Messages and acks


@dataclass(frozen=True)
class Message:
    """One message read from a stream partition."""

    stream: str
    """Name of the stream the message was read from."""
    partition: int
    """Partition the message was read from."""
    offset: int
    """Position of the message in its partition."""
    key: bytes | None
    """The message key, or None when the message has none (empty on the wire)."""
    value: bytes
    """The payload."""
    timestamp: datetime
    """When the broker received the message (aware, UTC, microsecond precision)."""
    timestamp_ns: int
    """The same instant in Unix nanoseconds, at full precision."""
    subject: str
    """The NATS subject the message arrived on (``Message.subject`` on the wire)."""
    reply_subject: str
    """The NATS reply subject the message arrived with (usually empty)."""
    headers: Mapping[str, bytes] = field(default_factory=_empty_mapping, hash=False)
    """Read-only headers, including ``"subject"`` and ``"reply"`` added by the server."""
    ack_inbox: str = ""
    """The NATS inbox acks for this message were sent to."""
    correlation_id: str = ""
    """Correlation id given by the publisher."""
    ack_policy: AckPolicy = AckPolicy.LEADER
    """Ack policy the message was published with."""

    def __post_init__(self) -> None:
        if type(self.headers) is not MappingProxyType:
            object.__setattr__(self, "headers", _read_only(self.headers))

    @classmethod
    def from_proto(cls, pb: api_pb2.Message) -> Message:
        """Build from a ``proto.Message`` received on a subscription."""
        if cls is not Message:
            return cls(
                stream=pb.stream,
                partition=pb.partition,
                offset=pb.offset,
                key=pb.key or None,
                value=pb.value,
                timestamp=datetime_from_ns(pb.timestamp),
                timestamp_ns=pb.timestamp,
                subject=pb.subject,
                reply_subject=pb.replySubject,
                headers=MappingProxyType(dict(pb.headers)),
                ack_inbox=pb.ackInbox,
                correlation_id=pb.correlationId,
                ack_policy=_ack_policy(pb.ackPolicy),
            )
        # Every received message goes through here. The generated __init__ of a
        # frozen dataclass sets each field through object.__setattr__, which
        # made this method ~3x slower than parsing the protobuf; filling the
        # instance dict directly is equivalent (the values are already final).
        # ``timestamp`` and ``headers`` are left out: __getattr__ makes them
        # from the wire message on first use, as most consumers read neither.
        message = object.__new__(cls)
        message.__dict__.update(
            _pb=pb,
            stream=pb.stream,
            partition=pb.partition,
            offset=pb.offset,
            key=pb.key or None,
            value=pb.value,
            timestamp_ns=pb.timestamp,
            subject=pb.subject,
            reply_subject=pb.replySubject,
            ack_inbox=pb.ackInbox,
            correlation_id=pb.correlationId,
            ack_policy=_ack_policy(pb.ackPolicy),
        )
        return message

    @classmethod
    def from_wire_fields(
        cls,
        offset: int,
        key: bytes,
        value: bytes,
        timestamp_ns: int,
        stream: str,
        partition: int,
        subject: str,
        reply_subject: str,
        headers: dict[str, bytes],
        ack_inbox: str,
        correlation_id: str,
        ack_policy: int,
    ) -> Message:
        """Build from the fields of a wire ``proto.Message`` (as the hand-written
        decoder of the pure-Python protobuf runtime reads them)."""
        message = object.__new__(cls)
        message.__dict__.update(
            stream=stream,
            partition=partition,
            offset=offset,
            key=key or None,
            value=value,
            timestamp_ns=timestamp_ns,
            subject=subject,
            reply_subject=reply_subject,
            headers=MappingProxyType(headers),
            ack_inbox=ack_inbox,
            correlation_id=correlation_id,
            ack_policy=_ack_policy(ack_policy),
        )
        return message

    def __getattr__(self, name: str) -> Any:
        # Reached only for an attribute the instance dict lacks: the fields
        # from_proto and from_wire_fields leave to be made on first use.
        if name == "timestamp" and "timestamp_ns" in self.__dict__:
            value: Any = datetime_from_ns(self.__dict__["timestamp_ns"])
        elif name == "headers" and "_pb" in self.__dict__:
            value = MappingProxyType(dict(self.__dict__["_pb"].headers))
        else:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        self.__dict__[name] = value
        return value


_ACK_POLICIES = {p.value: p for p in AckPolicy}


def _ack_policy(value: int) -> AckPolicy:
    # A dict lookup is several times faster than the enum's __call__.
    policy = _ACK_POLICIES.get(value)
    return AckPolicy(value) if policy is None else policy


class Ack:
    """The server's confirmation that a published message was stored.

    Immutable. Apart from the offset and correlation id, fields are read
    from the wire ack when first asked for: a pipelined publisher that only
    counts its acks pays for none of them.
    """

    __slots__ = ("_source", "correlation_id", "offset", "partition")

    _source: api_pb2.Ack | bytes
    partition: int
    """Partition the message was written to (known to the client, not sent in the ack)."""
    offset: int
    """Offset the message was stored at."""
    correlation_id: str
    """Correlation id of the published message."""

    def __init__(
        self, source: api_pb2.Ack | bytes, partition: int, offset: int, correlation_id: str
    ) -> None:
        # ``source``: the wire ack, or the serialized PublishResponse holding it.
        object.__setattr__(self, "_source", source)
        object.__setattr__(self, "partition", partition)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "correlation_id", correlation_id)

    @classmethod
    def from_proto(cls, pb: api_pb2.Ack, partition: int) -> Ack:
        """Build from a ``proto.Ack`` for a message sent to ``partition``.

        The wire ack says nothing about its error field here: check it first
        with :func:`pyliftbridge._requests.publish_response_error`.
        """
        return cls(pb, partition, pb.offset, pb.correlationId)

    @property
    def _pb(self) -> api_pb2.Ack:
        source = self._source
        if isinstance(source, bytes):
            try:
                source = api_pb2.PublishResponse.FromString(source).ack
            except DecodeError as exc:
                # Only the offset and correlation id were read when it came.
                raise ProtocolError(f"malformed ack from the server: {exc}") from exc
            object.__setattr__(self, "_source", source)
        return source

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Ack is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Ack is immutable (cannot delete {name!r})")

    @property
    def stream(self) -> str:
        """Stream the message was written to."""
        return self._pb.stream

    @property
    def partition_subject(self) -> str:
        """The stream's NATS subject, as the server reports it in ``partitionSubject``.

        Liftbridge v1.9.0 puts the stream's subject there for every partition;
        the subject of partition N > 0 is ``<partition_subject>.N``."""
        return self._pb.partitionSubject

    @property
    def message_subject(self) -> str:
        """NATS subject the message was published on."""
        return self._pb.msgSubject

    @property
    def ack_inbox(self) -> str:
        """NATS inbox the ack was sent to."""
        return self._pb.ackInbox

    @property
    def ack_policy(self) -> AckPolicy:
        """Ack policy the message was published with."""
        return _ack_policy(self._pb.ackPolicy)

    @property
    def reception_timestamp(self) -> datetime | None:
        """When the leader received the message (aware UTC), None if not reported."""
        return optional_datetime_from_ns(self._pb.receptionTimestamp)

    @property
    def commit_timestamp(self) -> datetime | None:
        """When the message was committed (aware UTC), None if not reported."""
        return optional_datetime_from_ns(self._pb.commitTimestamp)

    @property
    def reception_timestamp_ns(self) -> int:
        """``reception_timestamp`` in Unix nanoseconds (0 if not reported)."""
        return self._pb.receptionTimestamp

    @property
    def commit_timestamp_ns(self) -> int:
        """``commit_timestamp`` in Unix nanoseconds (0 if not reported)."""
        return self._pb.commitTimestamp

    def _key(self) -> tuple[Any, ...]:
        pb = self._pb
        return (
            pb.stream,
            self.partition,
            pb.partitionSubject,
            pb.msgSubject,
            self.offset,
            pb.ackInbox,
            self.correlation_id,
            pb.ackPolicy,
            pb.receptionTimestamp,
            pb.commitTimestamp,
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not Ack:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"Ack(stream={self.stream!r}, partition={self.partition}, offset={self.offset}, "
            f"correlation_id={self.correlation_id!r}, ack_policy={self.ack_policy.name}, "
            f"message_subject={self.message_subject!r}, "
            f"commit_timestamp={self.commit_timestamp!r})"
        )


# ---------------------------------------------------------------------------
# Cluster metadata


@dataclass(frozen=True)
class BrokerInfo:
    """One server of the cluster, as advertised in metadata."""

    id: str
    """The broker's server id."""
    host: str
    """Host the broker advertises for clients (empty for a broker not in the broker list)."""
    port: int
    """Port the broker advertises for clients (0 for a broker not in the broker list)."""
    partition_count: int = 0
    """Number of partitions the broker replicates (0 if the server does not say)."""
    leader_count: int = 0
    """Number of partitions the broker leads (0 if the server does not say)."""

    @property
    def address(self) -> str:
        """``host:port``, with an IPv6 host in brackets."""
        return format_address(self.host, self.port)

    @classmethod
    def from_proto(cls, pb: api_pb2.Broker) -> BrokerInfo:
        """Build from a ``proto.Broker``."""
        return cls(
            id=pb.id,
            host=pb.host,
            port=pb.port,
            partition_count=pb.partitionCount,
            leader_count=pb.leaderCount,
        )


def _lookup_broker(broker_id: str, brokers: Mapping[str, BrokerInfo]) -> BrokerInfo:
    found = brokers.get(broker_id)
    if found is None:
        # A replica may name a broker that is down and therefore missing from
        # the broker list; describe it by id rather than failing the whole
        # metadata snapshot.
        return BrokerInfo(broker_id, "", 0, 0, 0)
    return found


@dataclass(frozen=True)
class EventTimestamps:
    """When an event first and last happened on a partition."""

    first: datetime | None = None
    """First occurrence (aware UTC), None if it never happened."""
    latest: datetime | None = None
    """Latest occurrence (aware UTC), None if it never happened."""

    @classmethod
    def from_proto(cls, pb: api_pb2.PartitionEventTimestamps) -> EventTimestamps:
        """Build from a ``proto.PartitionEventTimestamps`` (0 means never)."""
        return cls(
            first=optional_datetime_from_ns(pb.firstTimestamp),
            latest=optional_datetime_from_ns(pb.latestTimestamp),
        )


@dataclass(frozen=True)
class PartitionInfo:
    """One partition of a stream."""

    stream: str
    """Name of the stream."""
    id: int
    """Partition number."""
    leader: BrokerInfo | None
    """The partition leader, None while there is none."""
    replicas: tuple[BrokerInfo, ...] = ()
    """Brokers replicating the partition."""
    isr: tuple[BrokerInfo, ...] = ()
    """Replicas currently in sync with the leader."""
    high_watermark: int = -1
    """Offset of the last committed message (-1 when the partition is empty)."""
    newest_offset: int = -1
    """Offset of the last message written to the leader (-1 when empty)."""
    paused: bool = False
    """Whether the partition is paused."""
    readonly: bool = False
    """Whether the partition is readonly."""
    messages_received: EventTimestamps = EventTimestamps()
    """When the partition first and last received a message."""
    paused_at: EventTimestamps = EventTimestamps()
    """When the partition was first and last paused."""
    readonly_at: EventTimestamps = EventTimestamps()
    """When the partition was first and last made readonly."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "replicas", tuple(self.replicas))
        object.__setattr__(self, "isr", tuple(self.isr))

    @classmethod
    def from_proto(
        cls,
        pb: api_pb2.PartitionMetadata,
        stream: str,
        brokers: Mapping[str, BrokerInfo],
    ) -> PartitionInfo:
        """Build from a ``proto.PartitionMetadata`` of ``stream``.

        Broker ids are resolved against ``brokers``; an id not found there
        becomes ``BrokerInfo(id, "", 0, 0, 0)``. Also used for
        FetchPartitionMetadata answers, keeping ``readonly`` (which
        go-liftbridge drops).
        """
        return cls(
            stream=stream,
            id=pb.id,
            leader=_lookup_broker(pb.leader, brokers) if pb.leader else None,
            replicas=tuple(_lookup_broker(b, brokers) for b in pb.replicas),
            isr=tuple(_lookup_broker(b, brokers) for b in pb.isr),
            high_watermark=pb.highWatermark,
            newest_offset=pb.newestOffset,
            paused=pb.paused,
            readonly=pb.readonly,
            messages_received=EventTimestamps.from_proto(pb.messagesReceivedTimestamps),
            paused_at=EventTimestamps.from_proto(pb.pauseTimestamps),
            readonly_at=EventTimestamps.from_proto(pb.readonlyTimestamps),
        )

    def _relinked(self, brokers: Mapping[str, BrokerInfo]) -> PartitionInfo:
        """This partition with its brokers re-resolved against a newer broker list."""
        return replace(
            self,
            leader=None if self.leader is None else _lookup_broker(self.leader.id, brokers),
            replicas=tuple(_lookup_broker(b.id, brokers) for b in self.replicas),
            isr=tuple(_lookup_broker(b.id, brokers) for b in self.isr),
        )


@dataclass(frozen=True)
class StreamInfo:
    """One stream and its partitions."""

    name: str
    """The stream's name."""
    subject: str
    """The NATS subject the stream is attached to (partition N > 0 uses ``subject.N``)."""
    partitions: Mapping[int, PartitionInfo] = field(default_factory=_empty_mapping, hash=False)
    """Read-only map of partition number → partition, in ascending order."""
    creation_time: datetime | None = None
    """When the stream was created (aware UTC), None if the server does not say."""

    def __post_init__(self) -> None:
        parts = self.partitions
        object.__setattr__(
            self, "partitions", MappingProxyType({k: parts[k] for k in sorted(parts)})
        )

    def partition(self, partition: int) -> PartitionInfo:
        """Return partition ``partition``.

        Raises:
            NoSuchPartitionError: the stream has no such partition.
        """
        try:
            return self.partitions[partition]
        except KeyError:
            raise NoSuchPartitionError(
                f"stream {self.name!r} has no partition {partition} (it has {len(self.partitions)})"
            ) from None

    @classmethod
    def from_proto(
        cls, pb: api_pb2.StreamMetadata, brokers: Mapping[str, BrokerInfo]
    ) -> StreamInfo:
        """Build from a ``proto.StreamMetadata`` (whose ``error`` should be OK)."""
        name = pb.name
        return cls(
            name=name,
            subject=pb.subject,
            partitions={
                pid: PartitionInfo.from_proto(part, name, brokers)
                for pid, part in pb.partitions.items()
            },
            creation_time=optional_datetime_from_ns(pb.creationTimestamp),
        )

    def _relinked(self, brokers: Mapping[str, BrokerInfo]) -> StreamInfo:
        return replace(
            self,
            partitions={pid: p._relinked(brokers) for pid, p in self.partitions.items()},
        )


@dataclass(frozen=True)
class ConsumerGroupInfo:
    """One consumer group."""

    id: str
    """The group id."""
    coordinator: str
    """Id of the broker coordinating the group."""
    epoch: int
    """The coordinator epoch (changes when the coordinator changes)."""

    @classmethod
    def from_proto(cls, pb: api_pb2.ConsumerGroupMetadata) -> ConsumerGroupInfo:
        """Build from a ``proto.ConsumerGroupMetadata`` (whose ``error`` should be OK)."""
        return cls(id=pb.groupId, coordinator=pb.coordinator, epoch=pb.epoch)


@dataclass(frozen=True)
class Metadata:
    """A snapshot of the cluster: brokers, streams and consumer groups."""

    brokers: tuple[BrokerInfo, ...]
    """Brokers of the cluster, in the order the server listed them."""
    streams: Mapping[str, StreamInfo] = field(hash=False)
    """Read-only map of stream name → stream."""
    groups: Mapping[str, ConsumerGroupInfo] = field(hash=False)
    """Read-only map of group id → consumer group (only groups asked for)."""
    fetched_at: datetime
    """When the snapshot was taken (as passed in by whoever fetched it)."""
    unknown_streams: frozenset[str] = frozenset()
    """Streams that were asked for but do not exist."""
    unknown_groups: frozenset[str] = frozenset()
    """Consumer groups that were asked for but do not exist."""
    _brokers_by_id: Mapping[str, BrokerInfo] = field(
        default_factory=_empty_mapping, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        brokers = tuple(self.brokers)
        object.__setattr__(self, "brokers", brokers)
        object.__setattr__(self, "_brokers_by_id", MappingProxyType({b.id: b for b in brokers}))
        object.__setattr__(self, "streams", _read_only(self.streams))
        object.__setattr__(self, "groups", _read_only(self.groups))
        object.__setattr__(self, "unknown_streams", frozenset(self.unknown_streams))
        object.__setattr__(self, "unknown_groups", frozenset(self.unknown_groups))

    def broker(self, broker_id: str) -> BrokerInfo | None:
        """The broker with that id, or None if it is not in the broker list."""
        return self._brokers_by_id.get(broker_id)

    def stream(self, name: str) -> StreamInfo:
        """The stream called ``name``.

        Raises:
            NoSuchStreamError: the snapshot has no such stream.
        """
        try:
            return self.streams[name]
        except KeyError:
            raise NoSuchStreamError(f"no stream named {name!r} in the metadata") from None

    def partition_count(self, name: str) -> int:
        """Number of partitions of stream ``name`` (0 if the stream is unknown)."""
        info = self.streams.get(name)
        return 0 if info is None else len(info.partitions)

    def addresses(self) -> list[str]:
        """``host:port`` of every broker, in broker-list order."""
        return [b.address for b in self.brokers]

    @classmethod
    def from_proto(cls, pb: api_pb2.FetchMetadataResponse, fetched_at: datetime) -> Metadata:
        """Build from a ``proto.FetchMetadataResponse`` received at ``fetched_at``.

        Streams reported as UNKNOWN_STREAM and groups reported as UNKNOWN_GROUP
        are left out and listed in :attr:`unknown_streams` /
        :attr:`unknown_groups`.
        """
        brokers = tuple(BrokerInfo.from_proto(b) for b in pb.brokers)
        by_id = {b.id: b for b in brokers}
        streams: dict[str, StreamInfo] = {}
        unknown_streams: set[str] = set()
        for s in pb.streamMetadata:
            if s.error == api_pb2.StreamMetadata.UNKNOWN_STREAM:
                unknown_streams.add(s.name)
            else:
                streams[s.name] = StreamInfo.from_proto(s, by_id)
        groups: dict[str, ConsumerGroupInfo] = {}
        unknown_groups: set[str] = set()
        for g in pb.groupMetadata:
            if g.error == api_pb2.ConsumerGroupMetadata.UNKNOWN_GROUP:
                unknown_groups.add(g.groupId)
            else:
                groups[g.groupId] = ConsumerGroupInfo.from_proto(g)
        return cls(
            brokers=brokers,
            streams=streams,
            groups=groups,
            fetched_at=fetched_at,
            unknown_streams=frozenset(unknown_streams),
            unknown_groups=frozenset(unknown_groups),
        )

    def merged(self, other: Metadata) -> Metadata:
        """Combine with a newer, possibly partial, snapshot ``other``.

        ``other``'s broker list replaces ours (unless it has none); its streams
        and groups replace or add to ours; streams and groups ``other`` reports
        as unknown are dropped (they were deleted). Streams kept from ``self``
        have their brokers re-resolved against the new broker list, so a broker
        that moved is seen at its new address. ``fetched_at`` is ``other``'s.
        """
        if other.brokers:
            brokers = other.brokers
            by_id = {b.id: b for b in brokers}
            streams = {
                name: info._relinked(by_id)
                for name, info in self.streams.items()
                if name not in other.streams and name not in other.unknown_streams
            }
            streams.update(other.streams)
        else:
            # No broker list in ``other``: its streams could not resolve broker
            # ids, so resolve them against ours.
            brokers = self.brokers
            by_id = {b.id: b for b in brokers}
            streams = {
                name: info
                for name, info in self.streams.items()
                if name not in other.streams and name not in other.unknown_streams
            }
            streams.update({name: info._relinked(by_id) for name, info in other.streams.items()})
        groups = {
            gid: g
            for gid, g in self.groups.items()
            if gid not in other.groups and gid not in other.unknown_groups
        }
        groups.update(other.groups)
        return Metadata(
            brokers=brokers,
            streams=streams,
            groups=groups,
            fetched_at=other.fetched_at,
            unknown_streams=(self.unknown_streams - other.streams.keys()) | other.unknown_streams,
            unknown_groups=(self.unknown_groups - other.groups.keys()) | other.unknown_groups,
        )


# ---------------------------------------------------------------------------
# Activity stream


@dataclass(frozen=True)
class ActivityEvent:
    """One event of the ``__activity`` stream (cluster-wide changes).

    Fields that do not apply to :attr:`op` hold their empty value (None,
    ``()`` or False).
    """

    id: int
    """Raft log index of the change: strictly increasing, use it to drop duplicates."""
    op: ActivityOp
    """What happened."""
    stream: str | None = None
    """The stream concerned (stream operations), else None."""
    partitions: tuple[int, ...] = ()
    """Partitions concerned (create/pause/resume/readonly); empty can mean all."""
    resume_all: bool = False
    """PAUSE_STREAM: publishing to any partition resumes all of them."""
    readonly: bool = False
    """SET_STREAM_READONLY: True when made readonly, False when made writable."""
    group_id: str | None = None
    """The consumer group concerned (group operations), else None."""
    consumer_id: str | None = None
    """The consumer concerned (group operations), else None."""
    streams: tuple[str, ...] = ()
    """JOIN_CONSUMER_GROUP: streams the consumer subscribes to."""
    expired: bool = False
    """LEAVE_CONSUMER_GROUP: True when the consumer timed out rather than left."""
    offset: int = -1
    """Offset of the carrying message in the ``__activity`` stream."""

    @classmethod
    def from_message(cls, message: Message) -> ActivityEvent:
        """Decode the ``ActivityStreamEvent`` carried in a ``__activity`` message.

        Raises:
            ProtocolError: the value is not an activity event, or lacks the
                details of its operation.
        """
        pb = api_pb2.ActivityStreamEvent()
        try:
            pb.ParseFromString(message.value)
        except (DecodeError, ValueError) as exc:
            raise ProtocolError(
                f"undecodable activity event at offset {message.offset}: {exc}"
            ) from exc
        op = ActivityOp(pb.op)
        # The event is not a oneof: the sub-message matching ``op`` is set.
        detail_field = _ACTIVITY_FIELDS.get(op)
        if detail_field is not None and not pb.HasField(detail_field):
            raise ProtocolError(
                f"activity event {pb.id} at offset {message.offset} is {op.name} "
                f"but has no {detail_field}"
            )
        base: dict[str, Any] = {"id": pb.id, "op": op, "offset": message.offset}
        if op is ActivityOp.CREATE_STREAM:
            c = pb.createStreamOp
            return cls(**base, stream=c.stream, partitions=tuple(c.partitions))
        if op is ActivityOp.DELETE_STREAM:
            return cls(**base, stream=pb.deleteStreamOp.stream)
        if op is ActivityOp.PAUSE_STREAM:
            p = pb.pauseStreamOp
            return cls(
                **base, stream=p.stream, partitions=tuple(p.partitions), resume_all=p.resumeAll
            )
        if op is ActivityOp.RESUME_STREAM:
            r = pb.resumeStreamOp
            return cls(**base, stream=r.stream, partitions=tuple(r.partitions))
        if op is ActivityOp.SET_STREAM_READONLY:
            s = pb.setStreamReadonlyOp
            return cls(**base, stream=s.stream, partitions=tuple(s.partitions), readonly=s.readonly)
        if op is ActivityOp.JOIN_CONSUMER_GROUP:
            j = pb.joinConsumerGroupOp
            return cls(
                **base, group_id=j.groupId, consumer_id=j.consumerId, streams=tuple(j.streams)
            )
        if op is ActivityOp.LEAVE_CONSUMER_GROUP:
            lv = pb.leaveConsumerGroupOp
            return cls(**base, group_id=lv.groupId, consumer_id=lv.consumerId, expired=lv.expired)
        # An operation newer than this client: report what is known.
        return cls(**base)


_ACTIVITY_FIELDS: dict[ActivityOp, str] = {
    ActivityOp.CREATE_STREAM: "createStreamOp",
    ActivityOp.DELETE_STREAM: "deleteStreamOp",
    ActivityOp.PAUSE_STREAM: "pauseStreamOp",
    ActivityOp.RESUME_STREAM: "resumeStreamOp",
    ActivityOp.SET_STREAM_READONLY: "setStreamReadonlyOp",
    ActivityOp.JOIN_CONSUMER_GROUP: "joinConsumerGroupOp",
    ActivityOp.LEAVE_CONSUMER_GROUP: "leaveConsumerGroupOp",
}
