"""Finding, and when needed building, the ``liftbridge`` and ``nats-server`` binaries.

The versions are pinned here and nowhere else.  Resolution order for each tool:

1. the environment variable (``$LIFTBRIDGE_BIN`` / ``$NATS_SERVER_BIN``), used as is;
2. the executable on ``PATH``;
3. the executable in Go's install directory (``$(go env GOBIN)`` or
   ``$(go env GOPATH)/bin``);
4. a build with the Go toolchain from the pinned module version.

A ``liftbridge`` found on ``PATH`` or in the Go install directory is used only if
it reports the pinned version; a ``nats-server`` of any version is accepted (the
client protocol Liftbridge speaks to it is stable).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ._errors import ServerUnavailableError

__all__ = [
    "LIFTBRIDGE",
    "LIFTBRIDGE_MODULE",
    "LIFTBRIDGE_VERSION",
    "NATS_SERVER",
    "NATS_SERVER_MODULE",
    "NATS_SERVER_VERSION",
    "GoTool",
    "find_binary",
    "liftbridge_binary",
    "nats_server_binary",
]

logger = logging.getLogger("pyliftbridge.testing")

#: Go module of the Liftbridge server.
LIFTBRIDGE_MODULE = "github.com/liftbridge-io/liftbridge"
#: The one place the Liftbridge server version used for tests is pinned.
LIFTBRIDGE_VERSION = "v1.9.0"
#: Go module of the NATS server.
NATS_SERVER_MODULE = "github.com/nats-io/nats-server/v2"
#: The one place the NATS server version used for tests is pinned.
NATS_SERVER_VERSION = "v2.15.2"

# A cold build of Liftbridge downloads and compiles a few hundred packages.
_BUILD_TIMEOUT = 30 * 60.0
_VERSION_TIMEOUT = 30.0
_TAIL_LINES = 40
_VERSION_RE = re.compile(r"v\d+\.\d+\.\d+[^\s]*")


@dataclass(frozen=True)
class GoTool:
    """A server program distributed as a Go module.

    Attributes:
        binary: executable name.
        env_var: environment variable that names the executable explicitly.
        module: Go module path (also the package path of the ``main`` package).
        version: pinned module version.
        exact_version: whether a binary found on PATH or in the Go install
            directory must report exactly ``version`` to be used.
    """

    binary: str
    env_var: str
    module: str
    version: str
    exact_version: bool


#: The Liftbridge server.
LIFTBRIDGE = GoTool("liftbridge", "LIFTBRIDGE_BIN", LIFTBRIDGE_MODULE, LIFTBRIDGE_VERSION, True)
#: The NATS server, used as the external NATS of a multi-node cluster.
NATS_SERVER = GoTool(
    "nats-server", "NATS_SERVER_BIN", NATS_SERVER_MODULE, NATS_SERVER_VERSION, False
)

_resolve_lock = threading.Lock()
_resolved: dict[tuple[str, str, str], str] = {}
_version_cache: dict[tuple[str, int, int], str | None] = {}


def liftbridge_binary(*, build: bool = True) -> str:
    """Return the path of a ``liftbridge`` executable, building it if ``build`` allows.

    Raises:
        ServerUnavailableError: no binary was found and none could be built.
    """
    return find_binary(LIFTBRIDGE, build=build)


def nats_server_binary(*, build: bool = True) -> str:
    """Return the path of a ``nats-server`` executable, building it if ``build`` allows.

    Raises:
        ServerUnavailableError: no binary was found and none could be built.
    """
    return find_binary(NATS_SERVER, build=build)


def find_binary(tool: GoTool, *, build: bool = True) -> str:
    """Return the path of ``tool``'s executable, following the module's resolution order.

    Results are cached per process (keyed on the environment variable and PATH).

    Raises:
        ServerUnavailableError: no binary was found and none could be built.
    """
    key = (tool.binary, os.environ.get(tool.env_var, ""), os.environ.get("PATH", ""))
    with _resolve_lock:
        cached = _resolved.get(key)
        if cached is not None and _is_executable(Path(cached)):
            return cached
        path = _find_uncached(tool, build=build)
        _resolved[key] = path
        return path


def _find_uncached(tool: GoTool, *, build: bool) -> str:
    explicit = os.environ.get(tool.env_var, "").strip()
    if explicit:
        path = Path(explicit).expanduser()
        if not _is_executable(path):
            raise ServerUnavailableError(
                f"${tool.env_var} is set to {explicit!r}, which is not an executable file. "
                f"Point it at a {tool.binary} binary, or unset it to let pyliftbridge find "
                f"or build {tool.module}@{tool.version}."
            )
        reported = _reported_version(path)
        if tool.exact_version and reported != tool.version:
            logger.warning(
                "$%s=%s reports version %s, not the pinned %s; using it anyway",
                tool.env_var,
                path,
                reported,
                tool.version,
            )
        return str(path)

    looked: list[str] = [f"${tool.env_var} (unset)"]
    on_path = shutil.which(tool.binary)
    looked.append(f"{tool.binary} on PATH ({on_path or 'not found'})")
    if on_path is not None and _acceptable(tool, Path(on_path)):
        return on_path

    go = shutil.which("go")
    bin_dir = _go_bin_dir(go)
    installed = bin_dir / tool.binary
    looked.append(f"{installed} ({'present' if installed.exists() else 'not found'})")
    if _acceptable(tool, installed):
        return str(installed)

    if not build:
        raise ServerUnavailableError(_not_found_message(tool, looked))
    if go is None:
        raise ServerUnavailableError(
            _not_found_message(tool, looked)
            + " The Go toolchain (`go`) is not on PATH either, so it cannot be built: install "
            f"Go, or install {tool.binary} {tool.version} yourself and set ${tool.env_var}."
        )
    return str(_build(tool, go, bin_dir))


def _not_found_message(tool: GoTool, looked: Sequence[str]) -> str:
    wanted = f"{tool.binary} {tool.version}" if tool.exact_version else tool.binary
    return f"No usable {wanted} binary; looked at: " + "; ".join(looked) + "."


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _acceptable(tool: GoTool, path: Path) -> bool:
    if not _is_executable(path):
        return False
    if not tool.exact_version:
        return True
    reported = _reported_version(path)
    if reported == tool.version:
        return True
    logger.warning(
        "ignoring %s: it reports version %s, the pinned version is %s", path, reported, tool.version
    )
    return False


def _reported_version(path: Path) -> str | None:
    """Run ``path --version`` and pick the first ``vX.Y.Z`` token out of its output."""
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key in _version_cache:
        return _version_cache[key]
    version: str | None = None
    try:
        proc = subprocess.run(
            [str(path), "--version"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=_VERSION_TIMEOUT,
            check=False,
        )
        match = _VERSION_RE.search(proc.stdout.decode("utf-8", "replace"))
        version = match.group(0) if match else None
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("cannot run %s --version: %s", path, exc)
    _version_cache[key] = version
    return version


def _go_bin_dir(go: str | None) -> Path:
    """Where ``go install`` puts executables: ``GOBIN``, else the first ``GOPATH`` entry's bin."""
    gobin = os.environ.get("GOBIN", "")
    gopath = os.environ.get("GOPATH", "")
    if go is not None:
        try:
            proc = subprocess.run(
                [go, "env", "GOBIN", "GOPATH"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_VERSION_TIMEOUT,
                check=True,
            )
            lines = [*proc.stdout.splitlines(), "", ""]
            gobin, gopath = lines[0].strip(), lines[1].strip()
        except (OSError, subprocess.SubprocessError) as exc:
            logger.warning("`go env` failed (%s); guessing the Go install directory", exc)
    if gobin:
        return Path(gobin).expanduser()
    first = gopath.split(os.pathsep)[0] if gopath else ""
    return (Path(first).expanduser() if first else Path.home() / "go") / "bin"


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """Hold a machine-wide lock so parallel test processes do not build the same thing twice."""
    import fcntl

    path = Path(tempfile.gettempdir()) / f"pyliftbridge-go-build-{os.getuid()}.lock"
    with open(path, "a+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("another process is building a server binary; waiting (lock %s)", path)
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class _BuildLog:
    """Collects the output of the build commands for the error message."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def run(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> bool:
        self.lines.append("$ " + " ".join(argv))
        logger.info("running: %s", " ".join(argv))
        try:
            proc = subprocess.run(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=_BUILD_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.output or b""
            self.lines.extend(out.decode("utf-8", "replace").splitlines())
            self.lines.append(f"(timed out after {_BUILD_TIMEOUT:.0f}s)")
            return False
        except OSError as exc:
            self.lines.append(f"(could not run: {exc})")
            return False
        self.lines.extend(proc.stdout.decode("utf-8", "replace").splitlines())
        if proc.returncode != 0:
            self.lines.append(f"(exit status {proc.returncode})")
        return proc.returncode == 0

    def tail(self) -> str:
        return "\n".join(self.lines[-_TAIL_LINES:])


def _build(tool: GoTool, go: str, bin_dir: Path) -> Path:
    target = bin_dir / tool.binary
    with _build_lock():
        # Another process may have finished the build while we waited for the lock.
        if _acceptable(tool, target):
            return target
        bin_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(GOBIN=str(bin_dir), GO111MODULE="on", GOWORK="off")
        log = _BuildLog()
        logger.info(
            "building %s@%s into %s (a few minutes the first time)",
            tool.module,
            tool.version,
            bin_dir,
        )
        with tempfile.TemporaryDirectory(prefix="pyliftbridge-gobuild-") as tmp:
            tmp_dir = Path(tmp)
            ok = log.run([go, "install", f"{tool.module}@{tool.version}"], cwd=tmp_dir, env=env)
            if not ok:
                # `go install pkg@version` also fetches the module's version list for its
                # deprecation check; proxies that refuse list requests (while serving the
                # pinned version itself) make it fail.  Building from a throwaway module
                # that requires the pinned version only downloads that version.
                ok = _build_in_temp_module(tool, go, target, tmp_dir / "module", env, log)
        if ok and _acceptable(tool, target):
            logger.info("built %s", target)
            return target
        raise ServerUnavailableError(
            f"Could not build {tool.module}@{tool.version} with {go}. It needs the Go "
            f"toolchain and access to the Go module proxy. Alternatively install "
            f"{tool.binary} {tool.version} yourself and set ${tool.env_var} to its path.\n"
            f"--- build output (tail) ---\n{log.tail()}"
        )


def _build_in_temp_module(
    tool: GoTool, go: str, target: Path, module_dir: Path, env: Mapping[str, str], log: _BuildLog
) -> bool:
    module_dir.mkdir()
    (module_dir / "tools.go").write_text(
        f'//go:build tools\n\npackage tools\n\nimport _ "{tool.module}"\n',
        encoding="utf-8",
    )
    partial = target.with_name(f".{tool.binary}.{os.getpid()}.partial")
    steps: list[list[str]] = [
        [go, "mod", "init", "pyliftbridgebuild"],
        [go, "get", f"{tool.module}@{tool.version}"],
        [go, "build", "-o", str(partial), tool.module],
    ]
    try:
        for argv in steps:
            if not log.run(argv, cwd=module_dir, env=env):
                return False
        # Rename into place so a concurrent reader never sees a half-written binary.
        os.replace(partial, target)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
