"""The live progress line of ``bench``, on stderr.

On a terminal it is a rich progress bar redrawn by the sampler (a few times
per second, never per message); otherwise one plain line per second, so a log
file gets a readable record and stdout stays clean for ``--json``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from ._common import say
from ._errors import require

__all__ = ["ProgressLine"]


class ProgressLine:
    """Progress of a phase towards ``total`` operations, or ``seconds`` of time."""

    def __init__(self, label: str, *, total: int | None, seconds: float | None) -> None:
        self._label = label
        self._total = total
        self._seconds = seconds
        self._rich: Any = None
        self._task: Any = None
        self._last_plain = 0.0
        progress = require("rich.progress", package="rich", feature="pyliftbridge bench")
        console = require("rich.console", package="rich", feature="pyliftbridge bench")
        if sys.stderr.isatty():
            columns = [
                progress.TextColumn("{task.description}"),
                progress.BarColumn(),
                progress.TextColumn("{task.fields[status]}"),
                progress.TimeElapsedColumn(),
            ]
            self._rich = progress.Progress(
                *columns, console=console.Console(stderr=True), auto_refresh=False
            )

    def __enter__(self) -> ProgressLine:
        if self._rich is not None:
            self._rich.start()
            self._task = self._rich.add_task(
                self._label, total=self._total or self._seconds, status=""
            )
        self._last_plain = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.stop()

    def update(self, done: int, elapsed: float) -> None:
        """``done`` operations after ``elapsed`` seconds (called by the sampler thread)."""
        rate = done / elapsed if elapsed > 0 else 0.0
        status = f"{done:,} msgs  {rate:,.0f} msg/s"
        if self._rich is not None:
            completed = done if self._total else min(elapsed, self._seconds or elapsed)
            self._rich.update(self._task, completed=completed, status=status)
            self._rich.refresh()
            return
        now = time.monotonic()
        if now - self._last_plain >= 1.0:
            self._last_plain = now
            say(f"{self._label}: {status} after {elapsed:.1f} s")
