"""Fixtures of the command-line tests: the CLI pointed at the session's real server."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from ._runner import Cli


@pytest.fixture(scope="module")
def cli(liftbridge: Any) -> Cli:
    """The command line, pointed at the shared Liftbridge server."""
    return Cli(liftbridge.address)


@pytest.fixture
def stream(request: pytest.FixtureRequest) -> str:
    """A stream name unique to this test."""
    # Unique across runs too: a server given by --liftbridge-address keeps its streams.
    return f"cli-{request.node.name[5:30].replace('_', '-')}-{uuid.uuid4().hex[:6]}"
