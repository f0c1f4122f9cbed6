"""Fuzzing every decoder of server bytes (targets in ``targets.py``).

hypothesis drives each target with arbitrary bytes here, on CPython and PyPy:
``PYLIFTBRIDGE_FUZZ_EXAMPLES`` examples per target (default 400, a few
thousand in all; raise it for a longer run). atheris, where it is installed
(CPython), drives the same targets coverage-guided: briefly here, and for
the long run with ``python tests/fuzz/run_atheris.py`` (see docs/reliability.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .targets import TARGETS

EXAMPLES = int(os.environ.get("PYLIFTBRIDGE_FUZZ_EXAMPLES", "400"))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_hypothesis(name: str) -> None:
    target = TARGETS[name]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.binary(max_size=2048))
    def run(data: bytes) -> None:
        target(data)

    run()


@pytest.mark.timeout(120)
def test_atheris_short_run() -> None:
    pytest.importorskip("atheris", reason="atheris is not installed (CPython only, best effort)")
    runner = Path(__file__).with_name("run_atheris.py")
    result = subprocess.run(
        [sys.executable, str(runner), "--combined", "--runs", "4000"],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "targets fuzzed: 8" in result.stdout, result.stdout[-2000:]
