"""``pyliftbridge publish STREAM [VALUE]``: one message, or one per line of stdin."""

from __future__ import annotations

import argparse
import sys
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from .. import Ack, AckPolicy, KeyPartitioner, LiftbridgeError
from ._common import ack_policy, add_connection_options, client, header, non_negative_int, say
from ._errors import CliError

__all__ = ["register"]


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``publish``."""
    p = sub.add_parser(
        "publish",
        parents=parents,
        help="publish a message, or one per line of stdin",
        description="Publish VALUE, or (VALUE '-' or absent) one message per line of stdin. "
        "Prints each ack's partition and offset on stdout.",
    )
    p.add_argument("stream")
    p.add_argument("value", nargs="?", default="-", help="the message (default '-': stdin lines)")
    keys = p.add_mutually_exclusive_group()
    keys.add_argument("--key", "-k", help="message key")
    keys.add_argument(
        "--key-separator",
        "-K",
        metavar="SEP",
        help="stdin lines are KEY<SEP>VALUE (a line without SEP has no key)",
    )
    p.add_argument(
        "--header",
        "-H",
        type=header,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a message header (repeatable)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--partition", "-p", type=non_negative_int, help="partition to publish to")
    where.add_argument(
        "--key-partitioner",
        action="store_true",
        help="choose the partition from the key (CRC-32, as go-liftbridge)",
    )
    p.add_argument(
        "--ack-policy", type=ack_policy, default=AckPolicy.LEADER, help="leader, all or none"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="print no offsets")
    add_connection_options(p, message_key=True)
    p.set_defaults(handler=_publish)


def _messages(args: argparse.Namespace) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) of each message to send."""
    key = None if args.key is None else args.key.encode()
    if args.value != "-":
        yield key, args.value.encode()
        return
    separator = None if args.key_separator is None else args.key_separator.encode()
    for line in sys.stdin.buffer:
        value = line[:-1] if line.endswith(b"\n") else line
        if separator is not None:
            head, sep, tail = value.partition(separator)
            if sep:
                yield head, tail
                continue
        yield key, value


def _report(future: Future[Ack | None], quiet: bool) -> LiftbridgeError | None:
    error = future.exception()
    if error is not None:
        if not isinstance(error, LiftbridgeError):
            raise error
        return error
    ack = future.result()
    if ack is not None and not quiet:
        sys.stdout.write(f"partition {ack.partition} offset {ack.offset}\n")
    return None


def _publish(args: argparse.Namespace) -> int:
    headers = dict(args.header)
    partitioner = KeyPartitioner() if args.key_partitioner else None
    sent = 0
    failures: list[LiftbridgeError] = []
    pending: deque[Future[Ack | None]] = deque()
    with client(args) as c:
        for key, value in _messages(args):
            pending.append(
                c.publish_async(
                    args.stream,
                    value,
                    key=key,
                    headers=headers,
                    partition=args.partition,
                    partitioner=partitioner,
                    ack_policy=args.ack_policy,
                )
            )
            sent += 1
            # Offsets are printed in input order as their acks come in.
            while pending and pending[0].done():
                error = _report(pending.popleft(), args.quiet)
                if error is not None:
                    failures.append(error)
        c.flush()
        while pending:
            error = _report(pending.popleft(), args.quiet)
            if error is not None:
                failures.append(error)
    sys.stdout.flush()
    if failures:
        first = failures[0]
        if sent == 1:
            raise first
        raise CliError(
            f"{len(failures)} of {sent} message(s) failed; the first: "
            f"{first} ({type(first).__name__})"
        )
    say(f"published {sent} message(s) to {args.stream}")
    return 0
