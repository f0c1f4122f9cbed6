"""What every subcommand shares: broker/TLS/timeout options, argument types, output helpers.

Errors a command can meet are turned into exit codes in :mod:`._errors`; the
argument types here raise :class:`argparse.ArgumentTypeError`, so argparse
reports a malformed value as a usage error (exit 2) without a traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Union

from .. import AckPolicy, TLSConfig

if TYPE_CHECKING:
    from .. import AsyncClient, Client

__all__ = [
    "BROKERS_ENV",
    "DEFAULT_BROKERS",
    "Position",
    "add_connection_options",
    "ack_policy",
    "async_client",
    "brokers_of",
    "client",
    "duration",
    "header",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "say",
    "start_position",
    "stop_position",
    "tls_of",
]

BROKERS_ENV = "LIFTBRIDGE_BROKERS"
DEFAULT_BROKERS = "localhost:9292"

#: What ``--from`` / ``--to`` turn into: the ``start_at``/``stop_at`` of ``subscribe``.
Position = Union[str, int, datetime, timedelta, None]

_DURATION = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def say(text: str) -> None:
    """Write one line to stderr (progress and notes; stdout carries the results)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# -- argument types ------------------------------------------------------------------


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def positive_float(text: str) -> float:
    """A number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def duration(text: str) -> timedelta:
    """``90``, ``1.5s``, ``250ms``, ``10m``, ``2h`` or ``7d`` (no unit: seconds)."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (examples: 30s, 250ms, 10m, 2h, 7d)"
        )
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def _timestamp(text: str) -> datetime | None:
    try:
        # Python 3.9's fromisoformat does not take a "Z" suffix.
        value = datetime.fromisoformat(re.sub(r"[zZ]$", "+00:00", text))
    except (ValueError, IndexError):  # PyPy's pure-Python datetime: IndexError on short text
        return None
    # A time without an offset is read as local time, as a person typing it means.
    return value if value.tzinfo is not None else value.astimezone()


def start_position(text: str) -> Position:
    """``--from``: new, earliest, latest, an offset, an ISO time or a duration ago."""
    word = text.strip().lower()
    if word in ("new", "earliest", "latest"):
        return word
    if word.isdigit():
        return int(word)
    if _DURATION.match(word) and not word.replace(".", "").isdigit():
        return duration(word)
    when = _timestamp(text.strip())
    if when is not None:
        return when
    raise argparse.ArgumentTypeError(
        f"not a start position: {text!r} (new, earliest, latest, an offset, "
        "an ISO time such as 2024-05-01T12:00:00Z, or a duration ago such as 10m)"
    )


def stop_position(text: str) -> Position:
    """``--to``: latest, an offset or an ISO time."""
    word = text.strip().lower()
    if word == "latest":
        return word
    if word.isdigit():
        return int(word)
    when = _timestamp(text.strip())
    if when is not None:
        return when
    raise argparse.ArgumentTypeError(
        f"not a stop position: {text!r} (latest, an offset, or an ISO time)"
    )


def header(text: str) -> tuple[str, bytes]:
    """``--header name=value``."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"a header is NAME=VALUE, not {text!r}")
    return name.strip(), value.encode()


def ack_policy(text: str) -> AckPolicy:
    """``leader``, ``all`` or ``none``."""
    try:
        return AckPolicy[text.strip().upper()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"ack policy is leader, all or none, not {text!r}"
        ) from None


# -- connection options --------------------------------------------------------------


def add_connection_options(
    parser: argparse.ArgumentParser, *, brokers_help: str = "", message_key: bool = False
) -> None:
    """``--brokers``, ``--tls``, ``--ca``, ``--cert``, ``--key``/``--tls-key``, ``--timeout``.

    ``message_key``: the command has a ``--key`` of its own (the message key).
    """
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--brokers",
        "-b",
        metavar="HOST:PORT[,...]",
        default=os.environ.get(BROKERS_ENV) or None,
        help=brokers_help
        or f"brokers to connect to (default: ${BROKERS_ENV} or {DEFAULT_BROKERS})",
    )
    group.add_argument("--tls", action="store_true", help="use TLS (implied by --ca/--cert)")
    group.add_argument("--ca", metavar="FILE", help="CA certificates (PEM) to verify brokers with")
    group.add_argument("--cert", metavar="FILE", help="client certificate (PEM), for mutual TLS")
    # ``publish --key`` is the message key; there the private key is only --tls-key.
    key_flags = ("--tls-key",) if message_key else ("--key", "--tls-key")
    group.add_argument(
        *key_flags, dest="tls_key", metavar="FILE", help="private key of --cert (PEM)"
    )
    group.add_argument(
        "--timeout",
        type=positive_float,
        default=10.0,
        metavar="SECONDS",
        help="deadline of each call to the cluster (default 10)",
    )


def brokers_of(args: argparse.Namespace) -> list[str]:
    """The broker addresses given by ``--brokers`` / ``$LIFTBRIDGE_BROKERS``, or the default."""
    text = args.brokers or DEFAULT_BROKERS
    return [part.strip() for part in text.split(",") if part.strip()]


def tls_of(args: argparse.Namespace) -> TLSConfig | None:
    """The TLS settings of ``--tls/--ca/--cert/--key`` (None: plaintext)."""
    if not (args.tls or args.ca or args.cert or args.tls_key):
        return None
    return TLSConfig(ca_file=args.ca, cert_file=args.cert, key_file=args.tls_key)


def client(args: argparse.Namespace, brokers: list[str] | None = None, **options: object) -> Client:
    """A blocking client for the command's connection options."""
    from .. import Client

    return Client(
        brokers or brokers_of(args),
        tls=tls_of(args),
        timeout=args.timeout,
        metadata_refresh_interval=None,
        **options,  # type: ignore[arg-type]
    )


def async_client(
    args: argparse.Namespace, brokers: list[str] | None = None, **options: object
) -> AsyncClient:
    """An asyncio client for the command's connection options."""
    from .. import AsyncClient

    return AsyncClient(
        brokers or brokers_of(args),
        tls=tls_of(args),
        timeout=args.timeout,
        metadata_refresh_interval=None,
        **options,  # type: ignore[arg-type]
    )
