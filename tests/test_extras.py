"""The extras stay extras: ``import pyliftbridge`` pulls in none of them."""

from __future__ import annotations

import subprocess
import sys


def test_import_pyliftbridge_loads_no_extra() -> None:
    code = (
        "import sys, pyliftbridge, pyliftbridge.compat, pyliftbridge.envelope\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'nats', 'mkdocs', 'mkdocstrings'} or m == 'pyliftbridge.nats_publisher')\n"
        "print(loaded)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    assert out.strip() == "[]"
