"""``pyliftbridge metadata`` and ``pyliftbridge cursors get | set``."""

from __future__ import annotations

import argparse
from typing import Any

from .. import NoSuchStreamError
from ._common import add_connection_options, client, non_negative_int
from ._output import json_line, print_table
from ._streams import partition_rows

__all__ = ["register"]


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``metadata`` and ``cursors``."""
    p = sub.add_parser(
        "metadata", parents=parents, help="the cluster: brokers, streams, partitions"
    )
    p.add_argument("streams", nargs="*", metavar="STREAM", help="only these streams")
    p.add_argument("--all", action="store_true", help="include internal streams (__activity...)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_connection_options(p)
    p.set_defaults(handler=_metadata)

    cursors = sub.add_parser("cursors", help="read or store a cursor's position")
    commands = cursors.add_subparsers(dest="cursors_command", metavar="COMMAND", required=True)
    for name, text in (("get", "print a cursor's offset (-1: none)"), ("set", "store an offset")):
        p = commands.add_parser(name, parents=parents, help=text)
        p.add_argument("cursor", help="cursor id")
        p.add_argument("stream")
        if name == "set":
            p.add_argument("offset", type=int)
        p.add_argument("--partition", "-p", type=non_negative_int, default=0)
        add_connection_options(p)
        p.set_defaults(handler=_cursor_get if name == "get" else _cursor_set)


def _metadata(args: argparse.Namespace) -> int:
    with client(args) as c:
        metadata = c.fetch_metadata(args.streams or None)
    if metadata.unknown_streams:
        missing = ", ".join(sorted(metadata.unknown_streams))
        raise NoSuchStreamError(f"no such stream: {missing}")
    streams = sorted(
        (
            s
            for s in metadata.streams.values()
            if args.all or args.streams or not s.name.startswith("__")
        ),
        key=lambda s: s.name,
    )
    if args.json:
        json_line(
            {
                "brokers": [
                    {
                        "id": b.id,
                        "address": b.address,
                        "partitions": b.partition_count,
                        "leaders": b.leader_count,
                    }
                    for b in metadata.brokers
                ],
                "streams": {
                    s.name: {
                        "subject": s.subject,
                        "partitions": {
                            str(p.id): {
                                "leader": p.leader.id if p.leader else None,
                                "replicas": [b.id for b in p.replicas],
                                "isr": [b.id for b in p.isr],
                            }
                            for p in s.partitions.values()
                        },
                    }
                    for s in streams
                },
            }
        )
        return 0
    print_table(
        f"{len(metadata.brokers)} broker(s)",
        ("id", "address", "partitions", "leaders"),
        ((b.id, b.address, b.partition_count, b.leader_count) for b in metadata.brokers),
    )
    print_table(
        f"{len(streams)} stream(s)",
        ("stream", "subject", "partition", "leader", "replicas", "isr"),
        (
            (s.name, s.subject, *row[:4])
            for s in streams
            for row in partition_rows(list(s.partitions.values()))
        ),
    )
    return 0


def _cursor_get(args: argparse.Namespace) -> int:
    with client(args) as c:
        print(c.fetch_cursor(args.cursor, args.stream, args.partition))
    return 0


def _cursor_set(args: argparse.Namespace) -> int:
    with client(args) as c:
        c.set_cursor(args.cursor, args.stream, args.partition, args.offset)
    print(f"cursor {args.cursor} of {args.stream}/{args.partition} set to {args.offset}")
    return 0
