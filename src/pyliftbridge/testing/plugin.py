"""pytest plugin: Liftbridge servers as fixtures, server logs in failure reports.

Loaded automatically (entry point ``pytest11``) when pyliftbridge is installed.
Nothing starts unless a test uses one of the fixtures:

``liftbridge`` (session)
    one :class:`~pyliftbridge.testing.LiftbridgeServer` shared by the whole run,
    or an :class:`ExternalLiftbridge` when ``--liftbridge-address`` (or
    ``$PYLIFTBRIDGE_TEST_ADDRESS``) names a running server.
``fresh_liftbridge`` (function)
    a new single node for one test.
``liftbridge_cluster`` (session)
    one 3-node :class:`~pyliftbridge.testing.LiftbridgeCluster` shared by the run.
``fresh_liftbridge_cluster`` (function)
    a new 3-node cluster for one test.

Tests may kill, pause or stop nodes of the shared server and cluster: before and
after every test that uses them they are healed (resumed, restarted, waited for).
When a test fails, the tails of the logs of the servers it used are added to its
report.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._server import LiftbridgeCluster, LiftbridgeServer

__all__ = [
    "ExternalLiftbridge",
    "fresh_liftbridge",
    "fresh_liftbridge_cluster",
    "liftbridge",
    "liftbridge_cluster",
]

_SHARED = ("liftbridge", "liftbridge_cluster")


class ExternalLiftbridge:
    """A Liftbridge server that runs outside the test session (given by address)."""

    def __init__(self, address: str) -> None:
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"expected host:port, got {address!r}")
        self.host = host.strip("[]")
        self.port = int(port)
        self.address = address

    @property
    def addresses(self) -> list[str]:
        """``[address]``."""
        return [self.address]

    def log_text(self) -> str:
        """Always empty: the log of an external server is not available."""
        return ""

    def log_tails(self, lines: int = 50) -> dict[str, str]:
        """Always empty."""
        return {}

    def heal(self) -> None:
        """Nothing to do: an external server is not managed here."""

    def __repr__(self) -> str:
        return f"<ExternalLiftbridge {self.address}>"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the plugin's command-line options."""
    group = parser.getgroup("pyliftbridge", "Liftbridge test servers (pyliftbridge)")
    group.addoption(
        "--liftbridge-address",
        default=os.environ.get("PYLIFTBRIDGE_TEST_ADDRESS") or None,
        help="use the Liftbridge server at HOST:PORT for the `liftbridge` fixture "
        "instead of starting one (default: $PYLIFTBRIDGE_TEST_ADDRESS)",
    )
    group.addoption(
        "--liftbridge-log-level",
        default="info",
        help="logging.level of the servers the fixtures start (default: info)",
    )
    group.addoption(
        "--liftbridge-log-lines",
        type=int,
        default=60,
        help="lines of each server log added to the report of a failed test (default: 60)",
    )
    group.addoption(
        "--liftbridge-keep-data",
        action="store_true",
        help="keep the temp directories (config, data, logs) of the servers",
    )


def _server_kwargs(config: pytest.Config) -> dict[str, Any]:
    return {
        "log_level": config.getoption("liftbridge_log_level"),
        "keep_data": bool(config.getoption("liftbridge_keep_data")),
    }


@pytest.fixture(scope="session")
def liftbridge(
    request: pytest.FixtureRequest,
) -> Iterator[LiftbridgeServer | ExternalLiftbridge]:
    """One Liftbridge node for the whole session (or the server named by an option)."""
    address = request.config.getoption("liftbridge_address")
    if address:
        yield ExternalLiftbridge(str(address))
        return
    from ._server import LiftbridgeServer

    with LiftbridgeServer(**_server_kwargs(request.config)) as server:
        yield server


@pytest.fixture
def fresh_liftbridge(request: pytest.FixtureRequest) -> Iterator[LiftbridgeServer]:
    """A Liftbridge node of its own for one test."""
    from ._server import LiftbridgeServer

    with LiftbridgeServer(**_server_kwargs(request.config)) as server:
        yield server


@pytest.fixture(scope="session")
def liftbridge_cluster(request: pytest.FixtureRequest) -> Iterator[LiftbridgeCluster]:
    """One 3-node Liftbridge cluster for the whole session."""
    from ._server import LiftbridgeCluster

    with LiftbridgeCluster(3, **_server_kwargs(request.config)) as cluster:
        yield cluster


@pytest.fixture
def fresh_liftbridge_cluster(request: pytest.FixtureRequest) -> Iterator[LiftbridgeCluster]:
    """A 3-node Liftbridge cluster of its own for one test."""
    from ._server import LiftbridgeCluster

    with LiftbridgeCluster(3, **_server_kwargs(request.config)) as cluster:
        yield cluster


@pytest.fixture(autouse=True)
def _pyliftbridge_heal_shared(request: pytest.FixtureRequest) -> Iterator[None]:
    # Only tests that use a shared server pay for this (a check of process state).
    shared = [request.getfixturevalue(name) for name in _SHARED if name in request.fixturenames]
    for server in shared:
        server.heal()
    yield
    for server in shared:
        server.heal()


def _servers_of(item: pytest.Item) -> list[Any]:
    funcargs: dict[str, Any] = getattr(item, "funcargs", {}) or {}
    servers = [v for v in funcargs.values() if callable(getattr(v, "log_tails", None))]
    if servers:
        return servers
    # The test may have started servers itself; report every live one.
    module = sys.modules.get("pyliftbridge.testing._server")
    return list(module.active_servers()) if module is not None else []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """Append server log tails to the report of a failed test phase."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.failed:
        return
    lines = int(item.config.getoption("liftbridge_log_lines"))
    if lines <= 0:
        return
    for server in _servers_of(item):
        try:
            tails: dict[str, str] = server.log_tails(lines)
        except Exception as exc:  # a report hook must never break the run
            tails = {repr(server): f"(could not read logs: {exc})"}
        for name, tail in tails.items():
            report.sections.append((f"{name} log tail ({report.when})", tail))
