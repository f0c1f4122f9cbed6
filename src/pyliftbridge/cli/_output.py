"""Printing results: tables through rich, JSON lines, text that survives any bytes."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ._errors import require

__all__ = ["json_line", "print_table", "text_of", "when"]


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Print a table on stdout (rich; plain, wide layout when stdout is not a terminal)."""
    rich_console = require("rich.console", package="rich", feature="printing tables")
    rich_table = require("rich.table", package="rich", feature="printing tables")
    # Not a terminal: no colours, and room enough that a pipe or a file gets whole rows.
    width = None if sys.stdout.isatty() else 200
    console = rich_console.Console(width=width, highlight=False)
    console.print(title)
    table = rich_table.Table()
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(table)


def json_line(value: Mapping[str, Any]) -> None:
    """Write one JSON object as one line on stdout, flushed (for tails read by scripts)."""
    sys.stdout.write(json.dumps(value, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def text_of(data: bytes, field: str, binary: list[str]) -> str:
    """``data`` as UTF-8 text; not UTF-8: base64, with ``field`` added to ``binary``."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        binary.append(field)
        return base64.b64encode(data).decode("ascii")


def when(value: datetime | None) -> str:
    """An aware datetime as ISO 8601 UTC with milliseconds, or ``-``."""
    if value is None:
        return "-"
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
