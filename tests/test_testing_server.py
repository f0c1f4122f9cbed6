"""Tests of pyliftbridge.testing: real servers, process hygiene, binary resolution, plugin."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyliftbridge._pb import api_pb2
from pyliftbridge._sync.channel import Channel
from pyliftbridge.errors import LiftbridgeError
from pyliftbridge.testing import (
    LiftbridgeCluster,
    LiftbridgeServer,
    ServerUnavailableError,
    _binaries,
)
from pyliftbridge.testing._probe import BrokerInfo, ClusterView
from pyliftbridge.testing._server import _merge_overrides, _render_config


def fetch_metadata(address: str) -> api_pb2.FetchMetadataResponse:
    """FetchMetadata through pyliftbridge's own transport, independent of the probe."""
    with Channel(address, connect_timeout=5.0) as channel:
        raw = channel.unary(
            "/proto.API/FetchMetadata",
            api_pb2.FetchMetadataRequest().SerializeToString(),
            timeout=10.0,
        )
    response = api_pb2.FetchMetadataResponse()
    response.ParseFromString(raw)
    return response


def brokers_of(response: api_pb2.FetchMetadataResponse) -> set[tuple[str, str, int]]:
    return {(b.id, b.host, b.port) for b in response.brokers}


def streams_of(response: api_pb2.FetchMetadataResponse) -> dict[str, api_pb2.StreamMetadata]:
    return {s.name: s for s in response.streamMetadata}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # An orphan stays a zombie until its new parent reaps it; it is dead all the same.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


# -- no server needed -------------------------------------------------------------


def test_config_rendering_and_overrides() -> None:
    config: dict[str, object] = {"logging.level": "info", "cursors.stream.partitions": 3}
    _merge_overrides(
        config,
        {
            "streams": {"retention.max.messages": 5, "compact.enabled": True},
            "cursors.stream.partitions": None,
            "nats.servers.extra": ["a", "b"],
        },
    )
    assert config == {
        "logging.level": "info",
        "streams.retention.max.messages": 5,
        "streams.compact.enabled": True,
        "nats.servers.extra": ["a", "b"],
    }
    text = _render_config(config)
    assert '"streams.retention.max.messages": 5\n' in text
    assert '"streams.compact.enabled": true\n' in text
    assert '"nats.servers.extra": ["a", "b"]\n' in text
    with pytest.raises(ValueError, match="managed"):
        _merge_overrides({}, {"clustering": {"server.id": "x"}})
    with pytest.raises(ValueError, match="managed"):
        LiftbridgeServer(config={"listen": "0.0.0.0:1"})


def test_readiness_reasons() -> None:
    brokers = (BrokerInfo("a", "127.0.0.1", 1), BrokerInfo("b", "127.0.0.1", 2))
    need = {"__cursors": 3, "__activity": 1}
    view = ClusterView(brokers[:1], {})
    assert "not listed" in (view.not_ready_reason(["127.0.0.1:1", "127.0.0.1:2"], need) or "")
    view = ClusterView(brokers, {"__activity": {0: "a"}})
    assert "__cursors does not exist" in (view.not_ready_reason(["127.0.0.1:1"], need) or "")
    view = ClusterView(brokers, {"__activity": {0: "a"}, "__cursors": {0: "a", 1: "", 2: "b"}})
    assert "[1] have no leader" in (view.not_ready_reason(["127.0.0.1:1"], need) or "")
    view = ClusterView(brokers, {"__activity": {0: "a"}, "__cursors": {0: "a", 1: "b", 2: "b"}})
    assert view.not_ready_reason(["127.0.0.1:1", "127.0.0.1:2"], need) is None


@pytest.fixture
def no_binaries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An environment where neither liftbridge nor go can be found."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.delenv("LIFTBRIDGE_BIN", raising=False)
    monkeypatch.delenv("NATS_SERVER_BIN", raising=False)
    monkeypatch.delenv("GOBIN", raising=False)
    monkeypatch.setenv("GOPATH", str(tmp_path / "gopath"))
    monkeypatch.setenv("PATH", str(empty))
    return empty


def test_explicit_binary_that_does_not_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFTBRIDGE_BIN", "/nonexistent/liftbridge")
    with pytest.raises(ServerUnavailableError, match=r"\$LIFTBRIDGE_BIN") as info:
        LiftbridgeServer().start()
    assert isinstance(info.value, LiftbridgeError)
    assert "/nonexistent/liftbridge" in str(info.value)


def test_no_binary_and_no_go(no_binaries: Path) -> None:
    before = set(Path(os.environ.get("TMPDIR", "/tmp")).glob("pyliftbridge-*"))
    with pytest.raises(ServerUnavailableError) as info:
        LiftbridgeServer().start()
    message = str(info.value)
    assert "Go toolchain" in message
    assert "$LIFTBRIDGE_BIN" in message
    assert _binaries.LIFTBRIDGE_VERSION in message
    # Nothing was left behind by the failed start.
    assert set(Path(os.environ.get("TMPDIR", "/tmp")).glob("pyliftbridge-*")) <= before
    with pytest.raises(ServerUnavailableError, match=r"\$NATS_SERVER_BIN"):
        _binaries.nats_server_binary()


def test_failed_build_reports_output_tail(no_binaries: Path) -> None:
    fake_go = no_binaries / "go"
    fake_go.write_text(
        textwrap.dedent(
            """\
            #!/bin/sh
            if [ "$1" = env ]; then echo "$GOBIN"; echo "$GOPATH"; exit 0; fi
            echo "go $*: proxy said no (fake)" >&2
            exit 1
            """
        )
    )
    fake_go.chmod(0o755)
    with pytest.raises(ServerUnavailableError) as info:
        _binaries.liftbridge_binary()
    message = str(info.value)
    assert "Could not build github.com/liftbridge-io/liftbridge@v1.9.0" in message
    assert "go install github.com/liftbridge-io/liftbridge@v1.9.0: proxy said no" in message
    # The throwaway-module fallback was tried too.
    assert "go mod init" in message


# -- a single node ------------------------------------------------------------------


@pytest.mark.integration
def test_single_server_answers_and_cleans_up() -> None:
    with LiftbridgeServer() as server:
        assert server.host == "127.0.0.1"
        assert server.address == f"127.0.0.1:{server.port}"
        response = fetch_metadata(server.address)
        assert brokers_of(response) == {("single", "127.0.0.1", server.port)}
        streams = streams_of(response)
        assert sorted(streams["__cursors"].partitions) == [0, 1, 2]
        assert "__activity" in streams
        assert f"Starting Liftbridge server on {server.address}" in server.log_text()
        pid = server.node.pid
        work_dir = server.work_dir
        assert pid is not None and pid_alive(pid)
        assert work_dir.is_dir()
    assert wait_gone(pid)
    assert not work_dir.exists()
    assert not server.running


@pytest.mark.integration
def test_single_server_kill_and_restart() -> None:
    with LiftbridgeServer() as server:
        port = server.port
        old_pid = server.node.pid
        assert old_pid is not None
        server.kill()
        assert not server.running
        assert wait_gone(old_pid)
        with pytest.raises(LiftbridgeError):
            fetch_metadata(server.address)
        server.restart()
        assert server.port == port
        assert brokers_of(fetch_metadata(server.address)) == {("single", "127.0.0.1", port)}


@pytest.mark.integration
def test_processes_die_with_a_killed_owner(tmp_path: Path) -> None:
    """SIGKILL of the Python process skips atexit; the guardian still cleans up."""
    script = textwrap.dedent(
        """\
        import sys, time
        from pyliftbridge.testing import LiftbridgeServer
        server = LiftbridgeServer().start()
        server.pause()  # a stopped process must be killed too
        print(server.node.pid, server.work_dir, flush=True)
        time.sleep(300)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline().split()
        assert line, "the owner process did not start a server"
        pid, work_dir = int(line[0]), Path(line[1])
        assert pid_alive(pid)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    assert wait_gone(pid)
    deadline = time.monotonic() + 10
    while work_dir.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not work_dir.exists()


# -- a cluster ------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[LiftbridgeCluster]:
    with LiftbridgeCluster(3) as cluster:
        yield cluster


@pytest.mark.integration
@pytest.mark.cluster
def test_cluster_every_node_answers(cluster: LiftbridgeCluster) -> None:
    expected = {(f"n{i}", "127.0.0.1", cluster.node(i).port) for i in range(3)}
    for address in cluster.addresses:
        response = fetch_metadata(address)
        assert brokers_of(response) == expected
        cursors = streams_of(response)["__cursors"]
        assert len(cursors.partitions) == 3
        for partition in cursors.partitions.values():
            # Bootstrapped with all peers: the internal streams are replicated everywhere.
            assert sorted(partition.replicas) == ["n0", "n1", "n2"]
    assert cluster.metadata_leader() in (0, 1, 2)
    assert cluster.leader_of("__cursors", 0) in (0, 1, 2)
    with pytest.raises(LookupError):
        cluster.leader_of("no-such-stream", 0)


@pytest.mark.integration
@pytest.mark.cluster
def test_cluster_kill_failover_restart(cluster: LiftbridgeCluster) -> None:
    victim = cluster.leader_of("__cursors", 0)
    old_pid = cluster.node(victim).pid
    assert old_pid is not None
    cluster.kill(victim)
    assert wait_gone(old_pid)
    assert victim not in cluster.running_nodes()
    survivor = cluster.wait_for_leader("__cursors", 0, exclude=[victim])
    assert survivor != victim
    cluster.restart(victim)
    assert cluster.node(victim).running
    response = fetch_metadata(cluster.addresses[victim])
    assert {b.id for b in response.brokers} == {"n0", "n1", "n2"}


@pytest.mark.integration
@pytest.mark.cluster
def test_cluster_pause_resume_stop(cluster: LiftbridgeCluster) -> None:
    cluster.pause(2)
    assert cluster.node(2).paused
    assert 2 not in cluster.running_nodes()
    with pytest.raises(LiftbridgeError):
        with Channel(cluster.addresses[2], connect_timeout=1.0) as channel:
            channel.unary(
                "/proto.API/FetchMetadata",
                api_pb2.FetchMetadataRequest().SerializeToString(),
                timeout=1.0,
            )
    cluster.resume(2)
    assert not cluster.node(2).paused
    # After being frozen the node may have cached an incomplete broker list;
    # heal restarts it if so.
    cluster.heal()
    assert len(fetch_metadata(cluster.addresses[2]).brokers) == 3
    cluster.stop(1)
    assert not cluster.node(1).running
    cluster.heal()
    assert cluster.running_nodes() == [0, 1, 2]


@pytest.mark.integration
@pytest.mark.cluster
def test_cluster_processes_gone_after_exit() -> None:
    with LiftbridgeCluster(3) as cluster:
        pids = [node.pid for node in cluster]
        nats_pid = cluster._nats.process.pid if cluster._nats is not None else None
        work_dir = cluster.work_dir
    for pid in [*pids, nats_pid]:
        assert pid is not None
        assert wait_gone(pid)
    assert not work_dir.exists()


# -- the pytest plugin ---------------------------------------------------------------


@pytest.mark.integration
def test_shared_fixture_heals(liftbridge: LiftbridgeServer) -> None:
    assert len(fetch_metadata(liftbridge.address).brokers) == 1
    liftbridge.kill()
    liftbridge.heal()
    assert len(fetch_metadata(liftbridge.address).brokers) == 1


@pytest.mark.integration
def test_plugin_reports_server_logs_on_failure(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            """\
            def test_fails(fresh_liftbridge):
                assert fresh_liftbridge.address.startswith("127.0.0.1:")
                assert False, "deliberate"
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_inner.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "liftbridge 127.0.0.1:" in proc.stdout
    assert "log tail (call)" in proc.stdout
    assert "Starting Liftbridge server on 127.0.0.1:" in proc.stdout


# -- the command line ----------------------------------------------------------------


@pytest.mark.integration
def test_cli_install_prints_binaries() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pyliftbridge.testing", "install"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    paths = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    assert set(paths) == {"LIFTBRIDGE_BIN", "NATS_SERVER_BIN"}
    for path in paths.values():
        assert os.access(path, os.X_OK)


@pytest.mark.integration
def test_cli_serve_until_interrupted() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyliftbridge.testing", "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("Liftbridge ready: 127.0.0.1:"), first
        address = first.split(": ", 1)[1].strip()
        assert len(fetch_metadata(address).brokers) == 1
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pytest.raises(LiftbridgeError):
        fetch_metadata(address)


@pytest.mark.integration
def test_plugin_uses_an_external_server(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            """\
            from pyliftbridge.testing.plugin import ExternalLiftbridge

            def test_external(liftbridge, request):
                assert isinstance(liftbridge, ExternalLiftbridge)
                assert liftbridge.address == request.config.getoption("liftbridge_address")
            """
        )
    )
    with LiftbridgeServer() as server:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_inner.py"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "PYLIFTBRIDGE_TEST_ADDRESS": server.address},
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
