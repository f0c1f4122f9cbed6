"""The ``pyliftbridge`` command line: a Liftbridge tool for people and scripts.

::

    pyliftbridge streams list | create | delete | pause | readonly | describe
    pyliftbridge publish STREAM [VALUE]        (no VALUE or '-': one message per stdin line)
    pyliftbridge subscribe STREAM [--from ...] [--format text|json|raw]
    pyliftbridge metadata | cursors get|set | activity
    pyliftbridge serve [--nodes N]             (a local development server until Ctrl-C)
    pyliftbridge bench | demo                  (verified throughput and latency)

Every command that talks to a cluster takes ``--brokers`` (default
``$LIFTBRIDGE_BROKERS``, else ``localhost:9292``), ``--tls``/``--ca``/``--cert``/
``--key`` and ``--timeout``. Exit status: 0 success, 1 Liftbridge or connection
error (one line on stderr; ``--debug`` adds the traceback), 2 usage error.
Tables, the progress line, the latency histogram and the plots come from the
``cli`` extra (``pip install 'pyliftbridge[cli]'``).

Importing :mod:`pyliftbridge` does not import this package.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .._version import __version__
from . import _bench, _cluster, _publish, _serve, _streams, _subscribe
from ._errors import EXIT_USAGE, run_command

__all__ = ["main"]

PROG = "pyliftbridge"


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's default must not undo a --debug given before it.
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    parser = argparse.ArgumentParser(
        prog=PROG, description="A Liftbridge command line (pure Python, no grpcio)."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parents = [common]
    _streams.register(sub, parents)
    _publish.register(sub, parents)
    _subscribe.register(sub, parents)
    _cluster.register(sub, parents)
    _serve.register(sub, parents)
    _bench.register(sub, parents)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pyliftbridge`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return run_command(args.handler, args, PROG)
