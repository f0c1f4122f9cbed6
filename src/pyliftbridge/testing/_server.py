"""Real Liftbridge servers for tests: :class:`LiftbridgeServer` and :class:`LiftbridgeCluster`."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import socket
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Union

from .._options import TLSConfig
from ..errors import LiftbridgeError
from ._binaries import liftbridge_binary, nats_server_binary
from ._errors import ServerStartupError
from ._probe import ClusterView, fetch_metadata, serving
from ._process import START_MARKER, ManagedProcess, forget_directory, remove_on_abnormal_exit

__all__ = [
    "DEFAULT_ENCRYPTION_KEY",
    "LiftbridgeCluster",
    "LiftbridgeNode",
    "LiftbridgeServer",
    "active_servers",
]

logger = logging.getLogger("pyliftbridge.testing")

#: Value of ``LIFTBRIDGE_ENCRYPTION_KEY`` given to servers unless overridden: the
#: server uses it as-is as a 32-byte key, so streams created with encryption work.
DEFAULT_ENCRYPTION_KEY = "pyliftbridge-test-key-0123456789"

#: Config values accepted in ``config=`` overrides (nested mappings are flattened).
ConfigValue = Union[str, int, float, bool, Sequence[Union[str, int]], None]

LOOPBACK = "127.0.0.1"

# Keys whose values these classes choose (ports, paths, identities, bootstrap); an
# override would silently break the addresses and readiness checks exposed here.
_MANAGED_KEYS = frozenset(
    {
        "listen",
        "host",
        "port",
        "data.dir",
        "nats.servers",
        "nats.embedded",
        "nats.embedded.config",
        "clustering.server.id",
        "clustering.namespace",
        "clustering.raft.bootstrap.seed",
        "clustering.raft.bootstrap.peers",
    }
)

_COMMON_DEFAULTS: dict[str, ConfigValue] = {
    "activity.stream.enabled": True,
    "cursors.stream.partitions": 3,
    # Idle cursor partitions are paused after 1 minute by default, which would make
    # cursor calls in long test runs fail; never pause them.
    "cursors.stream.auto.pause.time": 0,
    "groups.consumer.timeout": "3s",
    "groups.coordinator.timeout": "3s",
}

# Fast failover: the values the server's own replication tests use.
_CLUSTER_DEFAULTS: dict[str, ConfigValue] = {
    "clustering.replica.max.lag.time": "3s",
    "clustering.replica.max.leader.timeout": "1s",
    "clustering.replica.max.idle.wait": "500ms",
    "clustering.replica.fetch.timeout": "500ms",
    "clustering.min.insync.replicas": 1,
}

_PORT_IN_USE = "address already in use"
_BECAME_LEADER = "Server became metadata leader"
_LOST_LEADERSHIP = ("Server lost metadata leadership", "Stepping down as metadata leader")
_TAIL_BYTES = 256 * 1024
_KEEP_AFTER_STOP = 64 * 1024
_POLL_INTERVAL = 0.1

_registry_lock = threading.Lock()
_registry: weakref.WeakSet[_Owner] = weakref.WeakSet()


def active_servers() -> list[LiftbridgeServer | LiftbridgeCluster]:
    """Servers and clusters that are started and not yet stopped, in this process."""
    with _registry_lock:
        owners = list(_registry)
    return [o for o in owners if isinstance(o, (LiftbridgeServer, LiftbridgeCluster))]


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


_PORT_FLOOR = 10000
_ports = random.Random()


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    """A loopback TCP port that is free right now (the caller binds it soon after).

    Chosen below the kernel's ephemeral range when there is room: a port from that
    range can be handed to some outgoing connection as its source port while a
    node is down, and the node could then not restart on it.
    """
    low = _ephemeral_low()
    if low - _PORT_FLOOR >= 5000:
        for _ in range(50):
            port = _ports.randrange(_PORT_FLOOR, low)
            if _port_is_free(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        found: int = sock.getsockname()[1]
        return found


def _flatten(config: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _merge_overrides(base: dict[str, object], overrides: Mapping[str, object] | None) -> None:
    """Merge user overrides (dotted keys or nested mappings; None deletes) into ``base``."""
    for key, value in _flatten(overrides or {}).items():
        if key in _MANAGED_KEYS:
            raise ValueError(f"config key {key!r} is managed by pyliftbridge.testing")
        if value is None:
            base.pop(key, None)
        else:
            base[key] = value


def _yaml_value(value: object) -> str:
    # JSON scalars and flat arrays are valid YAML flow values.
    if isinstance(value, (str, bool, int, float)):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    raise TypeError(f"unsupported config value {value!r}")


def _render_config(config: Mapping[str, object]) -> str:
    # Liftbridge resolves dotted top-level keys exactly like nested ones, and it
    # rejects unknown keys, so a flat file is both valid and easy to diff.
    lines = ["# written by pyliftbridge.testing"]
    lines.extend(f"{json.dumps(key)}: {_yaml_value(value)}" for key, value in config.items())
    return "\n".join(lines) + "\n"


def _internal_streams(config: Mapping[str, object]) -> dict[str, int]:
    """Internal streams a ready cluster must have, with their partition counts (0 = any)."""
    streams: dict[str, int] = {}
    cursors = int(str(config.get("cursors.stream.partitions", 0)))
    if cursors > 0:
        streams["__cursors"] = cursors
    if config.get("activity.stream.enabled") in (True, "true"):
        streams["__activity"] = 1
    return streams


def _process_env(extra: Mapping[str, str] | None, encryption_key: str | None) -> dict[str, str]:
    # LIFTBRIDGE_* variables override config keys; inherited ones would make the
    # server differ from what this module wrote.
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFTBRIDGE_")}
    if encryption_key is not None:
        env["LIFTBRIDGE_ENCRYPTION_KEY"] = encryption_key
    env.update(extra or {})
    return env


def _read_tail(path: Path, max_bytes: int = _TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    if size > max_bytes:
        text = text.split("\n", 1)[-1]
    return text


def _last_lines(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


class LiftbridgeNode:
    """One Liftbridge server process, owned by a :class:`LiftbridgeServer` or a cluster.

    The node keeps its id, port and data directory across :meth:`restart`, so a
    restarted node rejoins with its Raft state and partitions.
    """

    def __init__(
        self,
        *,
        server_id: str,
        work_dir: Path,
        binary: str,
        config: Mapping[str, object],
        env: Mapping[str, str],
        cluster_nodes: Callable[[], Sequence[LiftbridgeNode]],
        startup_timeout: float,
        extra_ports: Sequence[str] = (),
        client_tls: TLSConfig | None = None,
    ) -> None:
        self.server_id = server_id
        #: How the readiness probes reach this node (None: plaintext).
        self.client_tls = client_tls
        self.host = LOOPBACK
        self.port = _free_port()
        self.work_dir = work_dir
        self.data_dir = work_dir / "data"
        self.config_path = work_dir / "liftbridge.yaml"
        self.log_path = work_dir / "liftbridge.log"
        self.startup_timeout = startup_timeout
        self._config = dict(config)
        self._extra_ports = {key: _free_port() for key in extra_ports}
        self._cluster_nodes = cluster_nodes
        self._process = ManagedProcess(
            f"liftbridge {server_id}",
            [binary, "--config", str(self.config_path)],
            self.log_path,
            env=env,
            cwd=work_dir,
        )
        self._internal_streams = _internal_streams(config)
        self._launch_offset = 0
        self._ever_ready = False
        self._retained_log = ""
        self._scanned = 0
        self._claims_leadership = False

    # -- addresses ---------------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port`` of the node's gRPC API (also what it advertises)."""
        return f"{self.host}:{self.port}"

    def extra_port(self, name: str) -> int:
        """A port allocated next to the API port (e.g. the embedded NATS port)."""
        return self._extra_ports[name]

    @property
    def config(self) -> dict[str, object]:
        """The configuration written for the next start (flat dotted keys)."""
        cfg = dict(self._config)
        cfg["listen"] = self.address
        cfg["data.dir"] = str(self.data_dir)
        cfg["clustering.server.id"] = self.server_id
        return cfg

    # -- state ------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """Process id while running, else None."""
        return self._process.pid

    @property
    def running(self) -> bool:
        """True while the process exists (also when paused)."""
        return self._process.running

    @property
    def paused(self) -> bool:
        """True while the process is frozen by :meth:`pause`."""
        return self._process.paused

    # -- lifecycle ---------------------------------------------------------------

    def launch(self) -> None:
        """Write the config file and start the process without waiting for readiness."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(_render_config(self.config), encoding="utf-8")
        with contextlib.suppress(OSError):
            self._launch_offset = self.log_path.stat().st_size
        self._process.start()

    def start(self, *, wait: bool = True) -> None:
        """Start the process (and by default wait until it is ready)."""
        self.launch()
        if wait:
            self.wait_ready()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the process gracefully (SIGTERM, then SIGKILL after ``timeout``)."""
        self._process.stop(timeout)

    def kill(self) -> None:
        """Kill the process abruptly (SIGKILL), like a crash."""
        self._process.kill()

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): its sockets stay open but nothing answers."""
        self._process.pause()

    def resume(self) -> None:
        """Continue a paused process (SIGCONT)."""
        self._process.resume()

    def restart(self, *, wait: bool = True) -> None:
        """Stop the process if it runs, start it again with the same id, port and data."""
        if self.running:
            self.stop()
        self.start(wait=wait)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until this node answers ``FetchMetadata`` with a complete cluster view.

        Complete means: every node of its cluster is listed, and the internal
        streams exist with a leader on every partition.

        Raises:
            ServerStartupError: the process exited, or was not ready in time.
        """
        _wait_ready([self], self._cluster_nodes(), timeout or self.startup_timeout)

    def metadata(self, streams: Sequence[str] = (), *, timeout: float = 10.0) -> ClusterView:
        """This node's answer to ``FetchMetadata`` (see :func:`fetch_metadata`)."""
        return fetch_metadata(self.address, streams=streams, timeout=timeout, tls=self.client_tls)

    # -- logs --------------------------------------------------------------------

    def log_text(self) -> str:
        """The node's log (all runs of the process, most recent 256 KiB at most)."""
        text = _read_tail(self.log_path)
        return text if text else self._retained_log

    def log_tail(self, lines: int = 50) -> str:
        """The last ``lines`` lines of the log."""
        return _last_lines(self.log_text(), lines)

    def claims_metadata_leadership(self) -> bool:
        """Whether the current run of the process last logged becoming metadata leader.

        Needs ``logging.level`` info or debug.  A paused or dead node may still claim it.
        """
        # Scanned incrementally so that a long log costs nothing on later calls.
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self._scanned)
                data = fh.read()
        except OSError:
            return False
        complete = data[: data.rfind(b"\n") + 1]
        self._scanned += len(complete)
        text = complete.decode("utf-8", "replace")
        became = text.rfind(_BECAME_LEADER)
        other = max(text.rfind(marker) for marker in (*_LOST_LEADERSHIP, START_MARKER))
        if became > other:
            self._claims_leadership = True
        elif other > became:
            self._claims_leadership = False
        return self._claims_leadership

    def _retain_log(self) -> None:
        text = _read_tail(self.log_path, _KEEP_AFTER_STOP)
        if text:
            self._retained_log = text

    def _check_alive(self, allow_port_change: bool) -> None:
        """Raise if the process exited; relaunch on a fresh port after a port clash."""
        if self.running:
            return
        new_output = ""
        with contextlib.suppress(OSError), open(self.log_path, "rb") as fh:
            fh.seek(self._launch_offset)
            new_output = fh.read().decode("utf-8", "replace")
        if allow_port_change and not self._ever_ready and _PORT_IN_USE in new_output:
            # Another process took one of our ports between choosing and binding it.
            logger.info("liftbridge %s: port in use, retrying on new ports", self.server_id)
            self._process.stop()
            self.port = _free_port()
            self._extra_ports = {key: _free_port() for key in self._extra_ports}
            self.launch()
            return
        raise ServerStartupError(
            f"liftbridge {self.server_id} exited with status {self._process.returncode} "
            f"during startup.\n--- log tail ({self.log_path}) ---\n{self.log_tail(40)}"
        )


def _live_addresses(
    cluster: Sequence[LiftbridgeNode], also: Sequence[LiftbridgeNode] = ()
) -> list[str]:
    """Addresses a ready node must list: running, unpaused nodes (and ``also``).

    Read at call time, so a node that moved to a fresh port after a clash counts
    under its new one.  Stopped and frozen nodes may or may not be listed: a node
    lists them only from a broker cache filled while they were up.
    """
    live = [n for n in cluster if n.running and not n.paused]
    return [n.address for n in [*live, *(n for n in also if n not in live)]]


def _wait_ready(
    verify: Sequence[LiftbridgeNode],
    cluster: Sequence[LiftbridgeNode],
    timeout: float,
    *,
    allow_port_change: bool = True,
) -> None:
    """Wait until every node in ``verify`` sees the whole ``cluster`` ready.

    First every running, unpaused node of the cluster must serve gRPC (see
    :func:`serving` for why), then each node in ``verify`` must answer
    ``FetchMetadata`` listing every running node of the cluster, with leaders for
    all partitions of the internal streams.
    """
    deadline = time.monotonic() + timeout
    reasons: dict[str, str] = {}

    def not_serving(node: LiftbridgeNode) -> str | None:
        wait = min(2.0, max(0.2, deadline - time.monotonic()))
        if serving(node.address, timeout=wait, tls=node.client_tls):
            return None
        return "gRPC server not serving yet"

    def not_ready(node: LiftbridgeNode) -> str | None:
        try:
            view = node.metadata(timeout=min(10.0, max(0.5, deadline - time.monotonic())))
        except ImportError:
            raise
        except Exception as exc:  # any failure just means "not ready yet"
            return f"FetchMetadata failed: {type(exc).__name__}: {exc}"
        return view.not_ready_reason(_live_addresses(cluster, verify), node._internal_streams)

    gate = [n for n in cluster if n.running and not n.paused]
    gate += [n for n in verify if n not in gate]
    for nodes, check in ((gate, not_serving), (list(verify), not_ready)):
        pending = list(nodes)
        while pending:
            for node in list(pending):
                node._check_alive(allow_port_change)
                reason = check(node)
                if reason is None:
                    pending.remove(node)
                else:
                    reasons[node.server_id] = reason
            if not pending:
                break
            if time.monotonic() >= deadline:
                details = "\n".join(
                    f"liftbridge {n.server_id} ({n.address}): {reasons.get(n.server_id, '?')}\n"
                    f"--- log tail ({n.log_path}) ---\n{n.log_tail(30)}"
                    for n in pending
                )
                raise ServerStartupError(
                    f"Liftbridge not ready after {timeout:.0f}s (ready = FetchMetadata lists "
                    f"every broker and the internal streams have leaders).\n{details}"
                )
            time.sleep(_POLL_INTERVAL)
    for node in verify:
        node._ever_ready = True
        logger.debug("liftbridge %s ready at %s", node.server_id, node.address)


class _Owner:
    """Shared context-manager plumbing of servers and clusters."""

    _work_dir: Path | None
    _keep_data: bool

    def _make_work_dir(self, work_dir: str | os.PathLike[str] | None) -> Path:
        if work_dir is not None:
            path = Path(work_dir)
            path.mkdir(parents=True, exist_ok=True)
        else:
            path = Path(tempfile.mkdtemp(prefix="pyliftbridge-"))
        if not self._keep_data:
            remove_on_abnormal_exit(path)
        return path

    def _register(self) -> None:
        with _registry_lock:
            _registry.add(self)

    def _unregister(self) -> None:
        with _registry_lock:
            _registry.discard(self)

    def _remove_work_dir(self) -> None:
        if self._work_dir is not None and not self._keep_data:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            forget_directory(self._work_dir)


class LiftbridgeServer(_Owner):
    """A single Liftbridge node with embedded NATS, on loopback ports, in a temp directory.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`)::

        with LiftbridgeServer() as server:
            client = connect([server.address])

    The node binds and advertises ``127.0.0.1:<free port>``; its embedded NATS
    listens on another free loopback port.  Cursors (3 partitions, never
    auto-paused) and the activity stream are enabled, consumer-group timeouts are
    3 s, and ``LIFTBRIDGE_ENCRYPTION_KEY`` is set so encrypted streams work.

    Args:
        config: Liftbridge config overrides, merged over the defaults; dotted keys
            (``"streams.retention.max.messages": 10``) or nested mappings; a value
            of None removes a default.  Ports, paths, ids and bootstrap keys are
            managed here and cannot be overridden.
        env: extra environment variables for the server process.
        binary: path of the ``liftbridge`` executable (default: found or built, see
            :mod:`pyliftbridge.testing`).
        log_level: Liftbridge ``logging.level`` (``debug``, ``info``, ``warn``, ``error``).
        startup_timeout: seconds to wait for readiness.
        encryption_key: value for ``LIFTBRIDGE_ENCRYPTION_KEY`` (None: not set).
        work_dir: directory for config, data and logs (default: a fresh temp dir).
        keep_data: keep the work directory after :meth:`stop`.
        client_tls: for a server configured for TLS (``config={"tls.cert": ...,
            "tls.key": ...}``), how the readiness probes connect to it.
    """

    def __init__(
        self,
        *,
        config: Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
        binary: str | None = None,
        log_level: str = "info",
        startup_timeout: float = 60.0,
        encryption_key: str | None = DEFAULT_ENCRYPTION_KEY,
        work_dir: str | os.PathLike[str] | None = None,
        keep_data: bool = False,
        client_tls: TLSConfig | None = None,
    ) -> None:
        self._client_tls = client_tls
        self._overrides = dict(config or {})
        self._env = dict(env or {})
        self._binary = binary
        self._log_level = log_level
        self._startup_timeout = startup_timeout
        self._encryption_key = encryption_key
        self._requested_dir = work_dir
        self._keep_data = keep_data
        self._work_dir = None
        self.namespace = f"pyliftbridge-{uuid.uuid4().hex[:12]}"
        self._node: LiftbridgeNode | None = None
        # Validate overrides now rather than at start.
        _merge_overrides({}, self._overrides)

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> LiftbridgeServer:
        """Start the server and wait until it answers ``FetchMetadata`` completely.

        Raises:
            ServerUnavailableError: no ``liftbridge`` binary could be obtained.
            ServerStartupError: the server exited or did not become ready in time.
        """
        if self._node is not None and self._node.running:
            raise RuntimeError("server already started")
        binary = self._binary or liftbridge_binary()
        self._work_dir = self._make_work_dir(self._requested_dir)
        config: dict[str, object] = {
            "logging.level": self._log_level,
            "clustering.namespace": self.namespace,
            "clustering.raft.bootstrap.seed": True,
            "nats.embedded": True,
            "nats.embedded.config": str(self._work_dir / "nats.conf"),
            **_COMMON_DEFAULTS,
        }
        _merge_overrides(config, self._overrides)
        node = _EmbeddedNatsNode(
            server_id="single",
            work_dir=self._work_dir,
            binary=binary,
            config=config,
            env=_process_env(self._env, self._encryption_key),
            cluster_nodes=lambda: [node],
            startup_timeout=self._startup_timeout,
            extra_ports=["nats"],
            client_tls=self._client_tls,
        )
        self._node = node
        self._register()
        try:
            node.start()
        except BaseException:
            self.stop()
            raise
        logger.info("liftbridge server ready at %s (work dir %s)", node.address, self._work_dir)
        return self

    def stop(self) -> None:
        """Stop the server and remove its temp directory (unless ``keep_data``)."""
        node = self._node
        if node is not None:
            node.stop()
            node._retain_log()
        self._unregister()
        self._remove_work_dir()

    def __enter__(self) -> LiftbridgeServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the node ----------------------------------------------------------------

    @property
    def node(self) -> LiftbridgeNode:
        """The server's node (its process)."""
        if self._node is None:
            raise RuntimeError("server not started")
        return self._node

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>`` of the gRPC API."""
        return self.node.address

    @property
    def host(self) -> str:
        """Host of the gRPC API (always ``127.0.0.1``)."""
        return self.node.host

    @property
    def port(self) -> int:
        """Port of the gRPC API."""
        return self.node.port

    @property
    def addresses(self) -> list[str]:
        """``[address]``, for code that handles servers and clusters alike."""
        return [self.address]

    @property
    def nats_url(self) -> str:
        """URL of the embedded NATS server."""
        return f"nats://{LOOPBACK}:{self.node.extra_port('nats')}"

    @property
    def work_dir(self) -> Path:
        """Directory holding config, data and log."""
        return self.node.work_dir

    @property
    def running(self) -> bool:
        """True while the server process exists (also when paused)."""
        return self._node is not None and self._node.running

    def kill(self) -> None:
        """Kill the server process (SIGKILL); :meth:`restart` brings it back."""
        self.node.kill()

    def pause(self) -> None:
        """Freeze the server process (SIGSTOP)."""
        self.node.pause()

    def resume(self) -> None:
        """Continue the frozen server process (SIGCONT)."""
        self.node.resume()

    def restart(self, *, wait: bool = True) -> None:
        """Restart the server process with the same port and data."""
        self.node.restart(wait=wait)

    def heal(self) -> None:
        """Bring the server back to running and ready if a test killed or paused it."""
        node = self.node
        if node.paused:
            node.resume()
        if not node.running:
            node.start()

    def log_text(self) -> str:
        """The server's log."""
        return "" if self._node is None else self._node.log_text()

    def log_tail(self, lines: int = 50) -> str:
        """The last ``lines`` lines of the server's log."""
        return _last_lines(self.log_text(), lines)

    def log_tails(self, lines: int = 50) -> dict[str, str]:
        """``{name: log tail}``, for code that handles servers and clusters alike."""
        return {f"liftbridge {self.address}": self.log_tail(lines)}

    def __repr__(self) -> str:
        where = self._node.address if self._node is not None else "not started"
        return f"<LiftbridgeServer {where}>"


class _EmbeddedNatsNode(LiftbridgeNode):
    """A node that runs NATS inside its own process, on the node's ``nats`` extra port."""

    @property
    def config(self) -> dict[str, object]:
        cfg = super().config
        cfg["nats.servers"] = [f"nats://{LOOPBACK}:{self.extra_port('nats')}"]
        return cfg

    def launch(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        conf = Path(str(self.config["nats.embedded.config"]))
        conf.write_text(f'listen: "{LOOPBACK}:{self.extra_port("nats")}"\n', encoding="utf-8")
        super().launch()


class _NatsServer:
    """An external ``nats-server`` process on a loopback port."""

    def __init__(self, binary: str, work_dir: Path, env: Mapping[str, str]) -> None:
        self.binary = binary
        self.work_dir = work_dir
        self.env = dict(env)
        self.port = _free_port()
        self.log_path = work_dir / "nats.log"
        self.process = self._make_process()

    def _make_process(self) -> ManagedProcess:
        return ManagedProcess(
            "nats-server",
            [self.binary, "-a", LOOPBACK, "-p", str(self.port)],
            self.log_path,
            env=self.env,
            cwd=self.work_dir,
        )

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    def start(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for _attempt in range(5):
            self.process.start()
            while time.monotonic() < deadline:
                if not self.process.running:
                    break
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection((LOOPBACK, self.port), timeout=1.0),
                ):
                    return
                time.sleep(0.05)
            log = _read_tail(self.log_path)
            if self.process.running or _PORT_IN_USE not in log:
                break
            # Lost a race for the port; take another one.
            self.process.stop()
            self.port = _free_port()
            self.process = self._make_process()
        self.process.stop()
        raise ServerStartupError(
            f"nats-server did not start on {LOOPBACK}:{self.port}.\n"
            f"--- log tail ({self.log_path}) ---\n{_last_lines(_read_tail(self.log_path), 30)}"
        )

    def stop(self) -> None:
        self.process.stop()


class LiftbridgeCluster(_Owner):
    """``n`` Liftbridge nodes sharing one external ``nats-server``, all on loopback.

    The nodes are bootstrapped with the full list of peer ids, so the internal
    ``__cursors`` and ``__activity`` streams are replicated to all of them, and
    they use short replica timeouts so partition leaders fail over within a few
    seconds.  Nodes are numbered ``0..n-1`` and keep their id, port and data
    across :meth:`restart`::

        with LiftbridgeCluster(3) as cluster:
            leader = cluster.leader_of("orders", 0)
            cluster.kill(leader)
            new_leader = cluster.wait_for_leader("orders", 0, exclude=[leader])
            cluster.restart(leader)

    Args:
        n: number of Liftbridge nodes.
        config: Liftbridge config overrides applied to every node (see
            :class:`LiftbridgeServer`).
        env: extra environment variables for the Liftbridge processes.
        binary: path of the ``liftbridge`` executable.
        nats_binary: path of the ``nats-server`` executable.
        log_level: Liftbridge ``logging.level``; :meth:`metadata_leader` needs ``info``
            or ``debug``.
        startup_timeout: seconds to wait for the whole cluster to be ready.
        encryption_key: value for ``LIFTBRIDGE_ENCRYPTION_KEY`` (None: not set).
        work_dir: directory for configs, data and logs (default: a fresh temp dir).
        keep_data: keep the work directory after :meth:`stop`.
    """

    def __init__(
        self,
        n: int = 3,
        *,
        config: Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
        binary: str | None = None,
        nats_binary: str | None = None,
        log_level: str = "info",
        startup_timeout: float = 90.0,
        encryption_key: str | None = DEFAULT_ENCRYPTION_KEY,
        work_dir: str | os.PathLike[str] | None = None,
        keep_data: bool = False,
    ) -> None:
        if n < 1:
            raise ValueError("a cluster needs at least one node")
        self.n = n
        self._overrides = dict(config or {})
        self._env = dict(env or {})
        self._binary = binary
        self._nats_binary = nats_binary
        self._log_level = log_level
        self._startup_timeout = startup_timeout
        self._encryption_key = encryption_key
        self._requested_dir = work_dir
        self._keep_data = keep_data
        self._work_dir = None
        self.namespace = f"pyliftbridge-{uuid.uuid4().hex[:12]}"
        self._nats: _NatsServer | None = None
        self._nodes: list[LiftbridgeNode] = []
        _merge_overrides({}, self._overrides)

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> LiftbridgeCluster:
        """Start NATS and all nodes, and wait until every node sees a ready cluster.

        Raises:
            ServerUnavailableError: a binary could not be obtained.
            ServerStartupError: a process exited or the cluster was not ready in time.
        """
        if self._nats is not None and self._nats.process.running:
            raise RuntimeError("cluster already started")
        binary = self._binary or liftbridge_binary()
        nats_binary = self._nats_binary or nats_server_binary()
        self._work_dir = self._make_work_dir(self._requested_dir)
        self._nats = _NatsServer(nats_binary, self._work_dir, os.environ)
        self._register()
        try:
            self._nats.start(self._startup_timeout)
            ids = [f"n{i}" for i in range(self.n)]
            config: dict[str, object] = {
                "logging.level": self._log_level,
                "nats.servers": [self._nats.url],
                "clustering.namespace": self.namespace,
                "clustering.raft.bootstrap.peers": ids,
                **_CLUSTER_DEFAULTS,
                **_COMMON_DEFAULTS,
            }
            _merge_overrides(config, self._overrides)
            env = _process_env(self._env, self._encryption_key)
            self._nodes = [
                LiftbridgeNode(
                    server_id=server_id,
                    work_dir=self._work_dir / server_id,
                    binary=binary,
                    config=config,
                    env=env,
                    cluster_nodes=lambda: self._nodes,
                    startup_timeout=self._startup_timeout,
                )
                for server_id in ids
            ]
            for node in self._nodes:
                node.launch()
            _wait_ready(self._nodes, self._nodes, self._startup_timeout)
        except BaseException:
            self.stop()
            raise
        logger.info("liftbridge cluster ready at %s (work dir %s)", self.addresses, self._work_dir)
        return self

    def stop(self, i: int | None = None) -> None:
        """Stop node ``i`` gracefully; with no argument, stop the whole cluster and clean up."""
        if i is not None:
            self.node(i).stop()
            return
        for node in self._nodes:
            node.stop()
            node._retain_log()
        if self._nats is not None:
            self._nats.stop()
        self._unregister()
        self._remove_work_dir()

    def __enter__(self) -> LiftbridgeCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- nodes -------------------------------------------------------------------

    @property
    def nodes(self) -> list[LiftbridgeNode]:
        """All nodes, index = node number."""
        return list(self._nodes)

    def node(self, i: int) -> LiftbridgeNode:
        """Node number ``i``."""
        if not self._nodes:
            raise RuntimeError("cluster not started")
        return self._nodes[i]

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[LiftbridgeNode]:
        return iter(self._nodes)

    @property
    def addresses(self) -> list[str]:
        """``host:port`` of every node, index = node number (including stopped nodes)."""
        return [node.address for node in self._nodes]

    @property
    def address(self) -> str:
        """Address of node 0, for code that handles servers and clusters alike."""
        return self.node(0).address

    @property
    def nats_url(self) -> str:
        """URL of the cluster's NATS server."""
        if self._nats is None:
            raise RuntimeError("cluster not started")
        return self._nats.url

    @property
    def work_dir(self) -> Path:
        """Directory holding configs, data and logs."""
        if self._work_dir is None:
            raise RuntimeError("cluster not started")
        return self._work_dir

    def running_nodes(self) -> list[int]:
        """Indexes of nodes whose process is running and not paused."""
        return [i for i, node in enumerate(self._nodes) if node.running and not node.paused]

    def kill(self, i: int) -> None:
        """Kill node ``i`` (SIGKILL), like a crash."""
        self.node(i).kill()

    def pause(self, i: int) -> None:
        """Freeze node ``i`` (SIGSTOP): connections stay open, nothing is answered."""
        self.node(i).pause()

    def resume(self, i: int) -> None:
        """Continue frozen node ``i`` (SIGCONT)."""
        self.node(i).resume()

    def restart(self, i: int, *, wait: bool = True) -> None:
        """(Re)start node ``i`` with the same id, port and data; wait until it is ready.

        Ready means the restarted node lists every node and sees leaders for the
        internal streams.  The other nodes may keep listing the broker set they
        cached while it was down for ``metadata.cache.max.age`` (see
        :meth:`wait_ready`).
        """
        self.node(i).restart(wait=wait)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until every running, unpaused node lists all of them and has internal streams.

        A node answers ``FetchMetadata`` from a broker list it gathered from its
        peers and caches for ``metadata.cache.max.age`` (2 minutes by default),
        even when a peer was down at the time.  Such a node looks not ready until
        the cache expires; :meth:`heal` restarts it instead of waiting.
        """
        nodes = [self._nodes[i] for i in self.running_nodes()]
        _wait_ready(nodes, self._nodes, timeout or self._startup_timeout)

    def heal(self) -> None:
        """Bring the cluster back to the state of a freshly started one.

        Resumes frozen nodes, starts stopped or killed ones, waits until they are
        ready, then asks every other node for metadata and restarts any whose
        cached broker list misses a running node (see :meth:`wait_ready`).
        """
        changed: list[LiftbridgeNode] = []
        for node in self._nodes:
            if node.paused:
                node.resume()
                changed.append(node)
            elif not node.running:
                node.launch()
                changed.append(node)
        if changed:
            _wait_ready(changed, self._nodes, self._startup_timeout)
        for node in self._nodes:
            if node in changed or not node.running:
                continue
            try:
                view = node.metadata()
                reason = view.not_ready_reason(_live_addresses(self._nodes), node._internal_streams)
            except LiftbridgeError as exc:
                reason = f"FetchMetadata failed: {exc}"
            if reason is not None:
                logger.info("restarting liftbridge %s to heal it: %s", node.server_id, reason)
                node.restart()

    # -- leadership --------------------------------------------------------------

    def _index_of(self, server_id: str) -> int | None:
        for i, node in enumerate(self._nodes):
            if node.server_id == server_id:
                return i
        return None

    def _view(self, streams: Sequence[str]) -> ClusterView:
        candidates = self.running_nodes()
        leader = self.metadata_leader()
        if leader is not None:
            candidates.sort(key=lambda i: i != leader)
        errors: list[str] = []
        for i in candidates:
            try:
                return self._nodes[i].metadata(streams)
            except LiftbridgeError as exc:
                errors.append(f"n{i}: {exc}")
        raise LookupError(f"no node answered FetchMetadata: {errors}")

    def leader_of(self, stream: str, partition: int = 0) -> int:
        """Index of the node that leads ``stream``/``partition`` according to metadata.

        Metadata is asked from the metadata leader when known, else any running node.

        Raises:
            LookupError: unknown stream or partition, no leader, or no node answered.
        """
        partitions = self._view([stream]).leaders.get(stream)
        if partitions is None or partition not in partitions:
            raise LookupError(f"no partition {stream}/{partition} in metadata")
        leader_id = partitions[partition]
        index = self._index_of(leader_id)
        if index is None:
            raise LookupError(f"{stream}/{partition} has no known leader ({leader_id!r})")
        return index

    def wait_for_leader(
        self,
        stream: str,
        partition: int = 0,
        *,
        exclude: Collection[int] = (),
        timeout: float = 30.0,
    ) -> int:
        """Wait until ``stream``/``partition`` is led by a running node not in ``exclude``.

        Raises:
            TimeoutError: no such leader within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                index = self.leader_of(stream, partition)
                if index not in exclude and index in self.running_nodes():
                    return index
                last = f"leader is node {index}"
            except LookupError as exc:
                last = str(exc)
            time.sleep(_POLL_INTERVAL)
        raise TimeoutError(f"no new leader for {stream}/{partition} in {timeout}s ({last})")

    def metadata_leader(self) -> int | None:
        """Index of the Raft metadata leader, read from the nodes' logs; None if unclear.

        Liftbridge does not expose the metadata leader over its API; each node logs
        when it gains and loses the role (at ``info`` level).  Only running, unpaused
        nodes are considered.
        """
        claims = [i for i in self.running_nodes() if self._nodes[i].claims_metadata_leadership()]
        return claims[0] if len(claims) == 1 else None

    # -- logs --------------------------------------------------------------------

    def log_text(self, i: int | None = None) -> str:
        """Log of node ``i``; with no argument, all nodes' logs and NATS's, with headers."""
        if i is not None:
            return self.node(i).log_text()
        parts = [
            f"===== liftbridge {n.server_id} ({n.address}) =====\n{n.log_text()}" for n in self
        ]
        if self._nats is not None:
            parts.append(f"===== nats-server =====\n{_read_tail(self._nats.log_path)}")
        return "\n".join(parts)

    def log_tails(self, lines: int = 50) -> dict[str, str]:
        """``{name: log tail}`` for every node and for NATS."""
        tails = {f"liftbridge {n.server_id} {n.address}": n.log_tail(lines) for n in self}
        if self._nats is not None:
            tails["nats-server"] = _last_lines(_read_tail(self._nats.log_path), lines)
        return tails

    def __repr__(self) -> str:
        return f"<LiftbridgeCluster {self.addresses or 'not started'}>"
