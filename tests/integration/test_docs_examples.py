"""Every Python example of the documentation site and the README, run against a real server.

Each fenced ``python`` block of ``docs/**/*.md`` and ``README.md`` is run as
a script of its own. Examples dial ``"<host>:9292"`` and
``nats://localhost:4222``; those addresses are replaced by the test server's.
An HTML comment on the line before a block says what else it needs:

* (none): the shared ``liftbridge`` server, emptied of streams first;
* ``fresh``: a server of its own (the example stores cursors or group positions);
* ``own-server``: the example starts its own servers;
* ``cluster``: the same, a 3-node cluster (marked ``cluster``);
* ``tls`` / ``mtls``: a TLS server (mutual TLS), with ``ca.pem``,
  ``client.pem`` and ``client.key`` in the working directory;
* ``nats``: needs nats-py; asyncio only (no blocking twin);
* ``pytest``: the block defines ``test_*`` functions, called with the fixtures;
* ``shell``: a ``bash`` block that runs (``pyliftbridge ...`` only).

An example that uses ``AsyncClient`` also runs as its blocking twin, made with
the rules of ``scripts/unasync.py``, so both flavours are checked.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyliftbridge import Client
from pyliftbridge.testing import LiftbridgeServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"^```(\w+)\s*$")
_MARKER = re.compile(r"^<!--\s*docs-test:\s*([\w-]+)\s*-->\s*$")
_ADDRESS = re.compile(r"\"(?:localhost|[\w-]+):9292\"|(?<=\s)localhost:9292\b")
_NATS_URL = "nats://localhost:4222"
_KINDS = {"fresh", "own-server", "cluster", "tls", "mtls", "nats", "pytest", "shell"}


@dataclass(frozen=True)
class Example:
    path: str
    line: int
    language: str
    code: str
    kind: str | None

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


def _examples() -> list[Example]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    found = []
    for path in files:
        lines = path.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            fence = _FENCE.match(lines[i])
            if fence is None:
                i += 1
                continue
            marker = _MARKER.match(lines[i - 1]) if i else None
            kind = marker.group(1) if marker else None
            assert kind is None or kind in _KINDS, f"{path}:{i}: unknown marker {kind!r}"
            end = lines.index("```", i + 1)
            language = fence.group(1)
            if language == "python" or (language == "bash" and kind == "shell"):
                found.append(
                    Example(
                        str(path.relative_to(ROOT)),
                        i + 1,
                        language,
                        "\n".join(lines[i + 1 : end]) + "\n",
                        kind,
                    )
                )
            i = end + 1
    return found


def _load_unasync():
    spec = importlib.util.spec_from_file_location("_unasync", ROOT / "scripts" / "unasync.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def blocking_twin(code: str) -> str:
    """The blocking version of an asyncio example."""
    # Awaiting a bare name (a publish future) is .result() on the blocking side.
    code = re.sub(r"\bawait (\w+)\b(?![.(\w])", r"\1.result()", code)
    code = _load_unasync().transform(code, set())
    code = code.replace("import asyncio\n", "").replace("asyncio.run(main())", "main()")
    assert not re.search(r"\basync\b|\bawait\b|asyncio", code), code
    return code


EXAMPLES = _examples()


def _params():
    params = []
    for example in EXAMPLES:
        marks = [pytest.mark.cluster] if example.kind == "cluster" else []
        params.append(pytest.param(example, False, id=example.id, marks=marks))
        if "AsyncClient" in example.code and example.kind != "nats":
            params.append(pytest.param(example, True, id=f"{example.id}[blocking twin]"))
    return params


def test_examples_were_found():
    pages = {e.path for e in EXAMPLES}
    assert "README.md" in pages and "docs/migration.md" in pages
    assert len(EXAMPLES) >= 20


def _empty(address: str) -> None:
    with Client(address) as client:
        for stream in client.fetch_metadata().streams:
            if not stream.startswith("__"):
                client.delete_stream(stream)


def _certificates(directory: Path) -> dict[str, object]:
    trustme = pytest.importorskip("trustme", reason="trustme (test extra) makes the certificates")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("pyliftbridge-docs-client")
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    server.private_key_pem.write_to_path(str(directory / "server.key"))
    (directory / "server.pem").write_bytes(b"".join(b.bytes() for b in server.cert_chain_pems))
    client.private_key_pem.write_to_path(str(directory / "client.key"))
    (directory / "client.pem").write_bytes(b"".join(b.bytes() for b in client.cert_chain_pems))
    return {
        "tls.cert": str(directory / "server.pem"),
        "tls.key": str(directory / "server.key"),
    }


def _substitute(code: str, address: str, nats_url: str | None) -> str:
    code = _ADDRESS.sub(lambda m: f'"{address}"' if m.group().startswith('"') else address, code)
    if nats_url is not None:
        code = code.replace(_NATS_URL, nats_url)
    return code


def _run_python(code: str, name: str, fixtures: dict[str, object], call_tests: bool) -> None:
    namespace: dict[str, object] = {"__name__": "__docs_example__"}
    exec(compile(code, name, "exec"), namespace)
    if call_tests:
        tests = [f for n, f in namespace.items() if n.startswith("test_") and callable(f)]
        assert tests, "a pytest example must define a test function"
        for test in tests:
            names = test.__code__.co_varnames[: test.__code__.co_argcount]
            test(**{n: fixtures[n] for n in names})


def _run_shell(code: str) -> None:
    for line in code.splitlines():
        argv = shlex.split(line)
        assert argv[0] == "pyliftbridge", f"only pyliftbridge commands run here: {line}"
        subprocess.run(
            [sys.executable, "-m", "pyliftbridge", *argv[1:]],
            check=True,
            timeout=120,
            capture_output=True,
        )


@pytest.mark.parametrize(("example", "twin"), _params())
def test_example(example, twin, request, tmp_path, monkeypatch):
    if example.kind == "nats":
        pytest.importorskip("nats", reason="nats-py (the nats extra) is not installed")
    if example.kind == "shell":
        # The command line's own extra (the CPython 3.9/3.13 runs go without it).
        pytest.importorskip("rich", reason="rich (the cli extra) is not installed")
        pytest.importorskip("hdrh", reason="hdrhistogram (the cli extra) is not installed")
    code = blocking_twin(example.code) if twin else example.code
    monkeypatch.chdir(tmp_path)
    # Examples may add to sys.path or import modules of their own.
    monkeypatch.setattr(sys, "path", list(sys.path))
    modules = set(sys.modules)
    server = None
    try:
        if example.kind in ("own-server", "cluster"):
            address, nats_url = "unused:9292", None
        elif example.kind in ("tls", "mtls"):
            config = _certificates(tmp_path)
            if example.kind == "mtls":
                config["tls.client.auth.enabled"] = True
                config["tls.client.auth.ca"] = str(tmp_path / "ca.pem")
            from pyliftbridge import TLSConfig

            probe = TLSConfig(
                ca_file=str(tmp_path / "ca.pem"),
                cert_file=str(tmp_path / "client.pem"),
                key_file=str(tmp_path / "client.key"),
            )
            server = LiftbridgeServer(config=config, client_tls=probe).start()
            address, nats_url = server.address, None
        elif example.kind == "fresh":
            server = LiftbridgeServer().start()
            address, nats_url = server.address, server.nats_url
        else:
            shared = request.getfixturevalue("liftbridge")
            _empty(shared.address)
            address, nats_url = shared.address, getattr(shared, "nats_url", None)
            if example.kind == "nats" and nats_url is None:
                pytest.skip("the server given by --liftbridge-address has no known NATS address")
        code = _substitute(code, address, nats_url)
        if example.language == "bash":
            _run_shell(code)
        elif example.kind == "pytest":
            fixtures = {"liftbridge": request.getfixturevalue("liftbridge")}
            _run_python(code, example.id, fixtures, call_tests=True)
        else:
            _run_python(code, example.id, {}, call_tests=False)
    finally:
        if server is not None:
            server.stop()
        # Forget modules the example made (a vendored copy), not libraries it imported.
        for name in set(sys.modules) - modules:
            if str(getattr(sys.modules[name], "__file__", "")).startswith(str(tmp_path)):
                del sys.modules[name]
