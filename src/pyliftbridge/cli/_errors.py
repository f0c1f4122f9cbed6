"""Exit codes a script can rely on, and the one line of stderr that explains a failure.

* 0: success (and a tail ended with Ctrl-C);
* 1: a Liftbridge or connection error, a failed check, a missing extra package;
* 2: a usage error (argparse's own, :class:`UsageError`, or an argument the
  client library refused before sending anything).

Without ``--debug`` no traceback is shown for an expected failure; with it the
full traceback follows the line.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from types import ModuleType
from typing import Callable

from ..errors import InvalidArgumentError, LiftbridgeError

__all__ = [
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "MissingExtraError",
    "UsageError",
    "require",
    "run_command",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
_EXIT_INTERRUPTED = 130  # what shells report for SIGINT

INSTALL_CLI = "pip install 'pyliftbridge[cli]'"


class CliError(Exception):
    """A failure of a command, reported on one line with exit status 1."""

    exit_code = EXIT_ERROR


class UsageError(CliError):
    """Arguments that do not fit together (exit status 2)."""

    exit_code = EXIT_USAGE


class MissingExtraError(CliError):
    """A command needs a package that is not installed."""


def require(module: str, *, package: str, feature: str, install: str = INSTALL_CLI) -> ModuleType:
    """Import ``module``, or fail with a line naming the ``pip install`` that brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{feature} needs the {package} package, which is not installed "
            f"({exc}); {install} brings it"
        ) from exc


def describe(exc: BaseException) -> str:
    """One line saying what went wrong."""
    if isinstance(exc, LiftbridgeError):
        text = str(exc) or exc.__class__.__name__
        return f"{text} ({exc.__class__.__name__})"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
    return str(exc) or exc.__class__.__name__


def run_command(
    handler: Callable[[argparse.Namespace], int], args: argparse.Namespace, prog: str
) -> int:
    """Run a subcommand and turn what it raises into an exit status and one stderr line."""
    debug = bool(getattr(args, "debug", False))
    try:
        return handler(args)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"{prog}: interrupted\n")
        return _EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``| head``): nothing more to say to anyone.
        _silence_stdout()
        return EXIT_OK
    except (CliError, LiftbridgeError, OSError) as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"{prog}: error: {describe(exc)}\n")
        return _exit_code(exc)


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, CliError):
        return exc.exit_code
    if isinstance(exc, InvalidArgumentError) and exc.status is None:
        # Refused by the client before anything was sent: the arguments are wrong.
        return EXIT_USAGE
    return EXIT_ERROR


def _silence_stdout() -> None:
    # Python flushes stdout at exit; on a closed pipe that prints a second error.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
