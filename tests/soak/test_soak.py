"""The soak (``soak.py``) for a minute against the session's Liftbridge server.

``PYLIFTBRIDGE_SOAK_SECONDS`` sets the length (default 60); the documented
long run is ``python tests/soak/soak.py --seconds 600`` (docs/reliability.md).
"""

from __future__ import annotations

import os
import uuid

import pytest
from soak import format_report, run_soak

SECONDS = float(os.environ.get("PYLIFTBRIDGE_SOAK_SECONDS", "60"))

pytestmark = [pytest.mark.integration, pytest.mark.timeout(SECONDS + 240)]


def test_soak(liftbridge):
    report = run_soak(liftbridge.address, SECONDS, prefix=f"soak-{uuid.uuid4().hex[:8]}")
    print(format_report(report))
    assert not report.failures, format_report(report)
