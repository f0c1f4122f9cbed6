"""Command line: ``python -m pyliftbridge.testing {install,serve}``.

``install`` finds or builds ``liftbridge`` and ``nats-server`` and prints
``LIFTBRIDGE_BIN=<path>`` and ``NATS_SERVER_BIN=<path>`` lines (shell syntax).
``serve`` runs a single node (or ``--nodes N`` cluster) until interrupted and
prints the address(es) to connect to (the same as ``pyliftbridge serve``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ._errors import ServerStartupError, ServerUnavailableError


def _install() -> int:
    from ._binaries import liftbridge_binary, nats_server_binary

    print(f"LIFTBRIDGE_BIN={liftbridge_binary()}")
    print(f"NATS_SERVER_BIN={nats_server_binary()}")
    return 0


def _serve(nodes: int, log_level: str, keep_data: bool) -> int:
    # The same command as ``pyliftbridge serve``.
    from ..cli._serve import serve

    return serve(nodes, log_level=log_level, keep_data=keep_data)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m pyliftbridge.testing",
        description="Obtain and run Liftbridge servers for testing.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="find or build liftbridge and nats-server, print their paths")
    serve = sub.add_parser("serve", help="run Liftbridge until Ctrl-C")
    serve.add_argument("--nodes", type=int, default=1, help="number of nodes (default 1)")
    serve.add_argument("--log-level", default="info", help="Liftbridge logging.level")
    serve.add_argument("--keep-data", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "install":
            return _install()
        return _serve(args.nodes, args.log_level, args.keep_data)
    except (ServerUnavailableError, ServerStartupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
