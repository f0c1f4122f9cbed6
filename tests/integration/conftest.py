"""Integration tests: run coroutine test functions on a fresh event loop.

The async client tests are the hand-written source of the blocking ones
(``scripts/unasync.py``); a tiny hook runs them without a plugin dependency.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
from typing import Any

import pytest

_counter = itertools.count()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests with ``asyncio.run``."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    args: dict[str, Any] = {
        name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames
    }
    asyncio.run(asyncio.wait_for(pyfuncitem.obj(**args), 120))
    return True


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A stream name unique to this test."""
    base = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")
    return f"{base[:40]}-{next(_counter)}"
