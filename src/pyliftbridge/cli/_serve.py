"""``pyliftbridge serve [--nodes N]``: a local development node or cluster until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType
from typing import Any

from ._common import positive_int

__all__ = ["register", "serve"]


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``serve``."""
    p = sub.add_parser(
        "serve",
        parents=parents,
        help="run a local Liftbridge node (or --nodes N cluster) until Ctrl-C",
        description="Run Liftbridge on loopback ports (pyliftbridge.testing) until Ctrl-C "
        "or SIGTERM; prints the addresses to connect to.",
    )
    p.add_argument("--nodes", type=positive_int, default=1, help="number of nodes (default 1)")
    p.add_argument("--log-level", default="info", help="Liftbridge logging.level")
    p.add_argument("--keep-data", action="store_true", help="keep the work directory")
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    return serve(args.nodes, log_level=args.log_level, keep_data=args.keep_data)


def serve(nodes: int, *, log_level: str = "info", keep_data: bool = False) -> int:
    """Run ``nodes`` Liftbridge nodes until SIGINT or SIGTERM; returns 0.

    Raises:
        ServerUnavailableError: no server binary could be found or built.
        ServerStartupError: the server did not come up.
    """
    from ..testing import LiftbridgeCluster, LiftbridgeServer

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    server: LiftbridgeServer | LiftbridgeCluster
    if nodes == 1:
        server = LiftbridgeServer(log_level=log_level, keep_data=keep_data)
    else:
        server = LiftbridgeCluster(nodes, log_level=log_level, keep_data=keep_data)
    with server:
        # From here on a signal ends the wait below, and ``with`` stops the servers.
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        print(f"Liftbridge ready: {','.join(server.addresses)}", flush=True)
        print(f"NATS: {server.nats_url}", flush=True)
        print(f"Work dir: {server.work_dir}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        while not stop.wait(0.5):
            pass
        print("Stopping.", flush=True)
    return 0
