"""Child processes that cannot outlive the Python process that started them.

Each server runs in its own session (process group), so stopping it signals the
whole group.  Three layers make sure nothing is left behind:

* the owners (context managers, pytest fixtures) stop their processes;
* an :mod:`atexit` hook stops whatever is still running at interpreter exit;
* a tiny guardian process, started once per Python process, holds the read end
  of a pipe and is told the id of every process group started.  When this
  process dies in a way that skips ``atexit`` (SIGKILL, SIGTERM with the default
  handler, a crash), the pipe reaches end-of-file and the guardian kills the
  groups that are still registered.  Pure Python has no ``PR_SET_PDEATHSIG``;
  this gives the same effect.  It also deletes the temp directories it was told
  about.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

logger = logging.getLogger("pyliftbridge.testing")

# Runs in the guardian process with `python -S -c`: standard library only.
_GUARDIAN_CODE = """
import os, shutil, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
groups, dirs = set(), set()
for raw in sys.stdin.buffer:
    op, _, arg = raw.decode("utf-8", "surrogateescape").rstrip("\\n").partition(" ")
    if op == "+":
        groups.add(int(arg))
    elif op == "-":
        groups.discard(int(arg))
    elif op == "D":
        dirs.add(arg)
    elif op == "d":
        dirs.discard(arg)
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
if groups and dirs:
    time.sleep(0.5)
for path in dirs:
    shutil.rmtree(path, ignore_errors=True)
"""


class _Guardian:
    """The per-process guardian described in the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid = 0
        self._failed = False

    def _ensure(self) -> IO[bytes] | None:
        # After a fork the child must not share the parent's guardian.
        if self._proc is not None and self._pid != os.getpid():
            self._proc = None
        if self._proc is None and not self._failed:
            try:
                self._proc = subprocess.Popen(
                    [sys.executable, "-S", "-c", _GUARDIAN_CODE],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
                self._pid = os.getpid()
            except OSError as exc:
                self._failed = True
                logger.warning("cannot start the guardian process: %s", exc)
        return None if self._proc is None else self._proc.stdin

    def _send(self, line: str) -> None:
        with self._lock:
            pipe = self._ensure()
            if pipe is None:
                return
            try:
                pipe.write(line.encode("utf-8", "surrogateescape"))
                pipe.flush()
            except (OSError, ValueError):
                logger.warning("the guardian process is gone; relying on atexit only")
                self._failed = True
                self._proc = None

    def watch(self, pgid: int) -> None:
        self._send(f"+ {pgid}\n")

    def forget(self, pgid: int) -> None:
        self._send(f"- {pgid}\n")

    def watch_dir(self, path: str) -> None:
        self._send(f"D {path}\n")

    def forget_dir(self, path: str) -> None:
        self._send(f"d {path}\n")


_guardian = _Guardian()

#: Written to a process's log file before each start, followed by the command line.
START_MARKER = "--- pyliftbridge.testing: starting"
_live_lock = threading.Lock()
_live: set[ManagedProcess] = set()


class ManagedProcess:
    """One server process in its own process group, output appended to a log file.

    Args:
        name: short name for messages.
        argv: command line.
        log_path: file that receives stdout and stderr (appended to).
        env: complete environment of the process.
        cwd: working directory.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str],
        cwd: Path,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env)
        self.cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    def start(self) -> None:
        """Start the process (it must not be running)."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        with open(self.log_path, "ab") as log:
            log.write(f"{START_MARKER} {' '.join(self.argv)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
            )
        self._paused = False
        with _live_lock:
            _live.add(self)
        _guardian.watch(self._proc.pid)
        logger.debug("started %s (pid %d)", self.name, self._proc.pid)

    @property
    def pid(self) -> int | None:
        """Process id of the running process, or None."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the process has not exited (a paused process is running)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume` (or stop)."""
        return self._paused and self.running

    @property
    def returncode(self) -> int | None:
        """Exit status once the process has exited, else None."""
        return None if self._proc is None else self._proc.poll()

    def _signal_group(self, sig: int) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def pause(self) -> None:
        """Freeze the process group (SIGSTOP): it keeps its sockets but does nothing."""
        if not self.running:
            raise RuntimeError(f"{self.name} is not running")
        self._signal_group(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Thaw a paused process group (SIGCONT)."""
        self._signal_group(signal.SIGCONT)
        self._paused = False

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate gracefully (SIGTERM), then SIGKILL after ``timeout`` seconds."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            # A stopped process only sees the SIGTERM once it is continued.
            self._signal_group(signal.SIGCONT)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not exit within %.1fs; killing it", self.name, timeout)
        self._finish()

    def kill(self) -> None:
        """Kill the process group at once (SIGKILL)."""
        if self._proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self._finish()

    def _finish(self) -> None:
        proc = self._proc
        if proc is None:
            return
        # Whatever is left in the group (the leader, or anything it spawned) goes now.
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10.0)
        self._paused = False
        _guardian.forget(proc.pid)
        with _live_lock:
            _live.discard(self)
        logger.debug("%s exited with status %s", self.name, proc.returncode)


def remove_on_abnormal_exit(path: Path) -> None:
    """Have the guardian delete directory ``path`` if this process dies without cleanup."""
    if "\n" not in str(path):
        _guardian.watch_dir(str(path))


def forget_directory(path: Path) -> None:
    """Undo :func:`remove_on_abnormal_exit` (the owner removed or keeps the directory)."""
    if "\n" not in str(path):
        _guardian.forget_dir(str(path))


def live_processes() -> list[ManagedProcess]:
    """Processes started through this module that have not been stopped yet."""
    with _live_lock:
        return list(_live)


@atexit.register
def _stop_all_at_exit() -> None:
    for proc in live_processes():
        with contextlib.suppress(Exception):
            proc.stop(timeout=2.0)
