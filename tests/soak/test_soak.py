"""The soak (``soak.py``) against the session's Liftbridge server.

30 s per interpreter, so a CI run (CPython, then PyPy) soaks for a minute.
``PYLIFTBRIDGE_SOAK_SECONDS`` sets the length; the documented long run is
``python tests/soak/soak.py --seconds 600`` (docs/reliability.md).
"""

from __future__ import annotations

import os
import uuid

import pytest
from soak import format_report, run_soak

SECONDS = float(os.environ.get("PYLIFTBRIDGE_SOAK_SECONDS", "30"))

pytestmark = [pytest.mark.integration, pytest.mark.timeout(SECONDS + 240)]


def test_soak(liftbridge):
    report = run_soak(liftbridge.address, SECONDS, prefix=f"soak-{uuid.uuid4().hex[:8]}")
    print(format_report(report))
    assert not report.failures, format_report(report)
