"""Real Liftbridge servers for tests: one node, or a cluster, on loopback ports.

:class:`LiftbridgeServer` runs one node with embedded NATS; :class:`LiftbridgeCluster`
runs ``n`` nodes sharing an external ``nats-server``.  Both are context managers,
use fresh temp directories and free ports, and are ready only once a real
``FetchMetadata`` call lists every broker and the internal streams have leaders.
Every process started is stopped when its owner stops, at interpreter exit, and
(through a small guardian process) even if the Python process is killed.
POSIX only.

The pytest plugin (:mod:`pyliftbridge.testing.plugin`, loaded automatically when
pyliftbridge is installed) provides the fixtures ``liftbridge``,
``fresh_liftbridge``, ``liftbridge_cluster`` and ``fresh_liftbridge_cluster``.

Getting the server binaries
---------------------------
The versions are pinned in :mod:`pyliftbridge.testing._binaries`
(:data:`LIFTBRIDGE_VERSION`, :data:`NATS_SERVER_VERSION`).  ``liftbridge`` is
looked up in this order:

1. ``$LIFTBRIDGE_BIN`` (an explicit path; an error if it is not executable);
2. ``liftbridge`` on ``PATH``, if it reports the pinned version;
3. ``$(go env GOPATH)/bin/liftbridge`` (or ``$GOBIN``), if it reports the pinned version;
4. a build with the Go toolchain: ``go install
   github.com/liftbridge-io/liftbridge@<version>``, and if that fails, ``go get``
   plus ``go build`` in a throwaway module, installing into the same directory.
   Builds run under a file lock, so parallel test processes build once.

``nats-server`` follows the same order with ``$NATS_SERVER_BIN`` and the module
``github.com/nats-io/nats-server/v2`` (any version found is accepted).

When nothing works, :class:`ServerUnavailableError` says what to install or which
variable to set.  ``python -m pyliftbridge.testing install`` obtains both
binaries ahead of time; ``python -m pyliftbridge.testing serve`` runs a node
until interrupted.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._errors import ServerStartupError, ServerUnavailableError

if TYPE_CHECKING:
    from ._binaries import (
        LIFTBRIDGE_MODULE,
        LIFTBRIDGE_VERSION,
        NATS_SERVER_MODULE,
        NATS_SERVER_VERSION,
        liftbridge_binary,
        nats_server_binary,
    )
    from ._probe import BrokerInfo, ClusterView, fetch_metadata
    from ._server import (
        DEFAULT_ENCRYPTION_KEY,
        LiftbridgeCluster,
        LiftbridgeNode,
        LiftbridgeServer,
        active_servers,
    )

__all__ = [
    "DEFAULT_ENCRYPTION_KEY",
    "LIFTBRIDGE_MODULE",
    "LIFTBRIDGE_VERSION",
    "NATS_SERVER_MODULE",
    "NATS_SERVER_VERSION",
    "BrokerInfo",
    "ClusterView",
    "LiftbridgeCluster",
    "LiftbridgeNode",
    "LiftbridgeServer",
    "ServerStartupError",
    "ServerUnavailableError",
    "active_servers",
    "fetch_metadata",
    "liftbridge_binary",
    "nats_server_binary",
]

# Loaded on first use: the pytest plugin imports this package in every test run,
# including runs that never start a server.
_LAZY = {
    "LIFTBRIDGE_MODULE": "._binaries",
    "LIFTBRIDGE_VERSION": "._binaries",
    "NATS_SERVER_MODULE": "._binaries",
    "NATS_SERVER_VERSION": "._binaries",
    "liftbridge_binary": "._binaries",
    "nats_server_binary": "._binaries",
    "BrokerInfo": "._probe",
    "ClusterView": "._probe",
    "fetch_metadata": "._probe",
    "DEFAULT_ENCRYPTION_KEY": "._server",
    "LiftbridgeCluster": "._server",
    "LiftbridgeNode": "._server",
    "LiftbridgeServer": "._server",
    "active_servers": "._server",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
