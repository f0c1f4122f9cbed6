"""The blocking client is generated from the asyncio one; the output must be current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_unasync_output_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "unasync.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_generated_client_has_no_async_left() -> None:
    for path in (ROOT / "src" / "pyliftbridge" / "_sync").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "async def" not in text and "await " not in text, path
        assert "import asyncio" not in text, path
