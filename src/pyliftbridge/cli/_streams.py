"""``pyliftbridge streams list | create | delete | pause | readonly | describe``."""

from __future__ import annotations

import argparse
from typing import Any

from .. import PartitionInfo, StreamExistsError
from ._common import (
    add_connection_options,
    client,
    duration,
    non_negative_int,
    positive_int,
    say,
)
from ._output import json_line, print_table, when

__all__ = ["partition_rows", "register"]

_PARTITION_COLUMNS = (
    "partition",
    "leader",
    "replicas",
    "isr",
    "high watermark",
    "newest offset",
    "paused",
    "readonly",
)


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``streams`` and its subcommands."""
    streams = sub.add_parser("streams", help="list, create, delete, pause, describe streams")
    commands = streams.add_subparsers(dest="streams_command", metavar="COMMAND", required=True)

    p = commands.add_parser("list", parents=parents, help="list streams")
    p.add_argument("--all", action="store_true", help="include internal streams (__activity...)")
    p.add_argument("--json", action="store_true", help="one JSON object per stream")
    add_connection_options(p)
    p.set_defaults(handler=_list)

    p = commands.add_parser("create", parents=parents, help="create a stream")
    p.add_argument("name", help="stream name")
    p.add_argument("--subject", help="NATS subject (default: the stream name)")
    p.add_argument("--partitions", type=positive_int, default=1)
    p.add_argument("--replication-factor", type=positive_int, default=1)
    p.add_argument(
        "--max-replication", action="store_true", help="replicate to every broker of the cluster"
    )
    p.add_argument("--group", help="load-balance group of the stream's NATS subscription")
    p.add_argument("--retention-max-bytes", type=non_negative_int, metavar="BYTES")
    p.add_argument("--retention-max-messages", type=non_negative_int, metavar="N")
    p.add_argument("--retention-max-age", type=duration, metavar="DURATION")
    p.add_argument("--cleaner-interval", type=duration, metavar="DURATION")
    p.add_argument("--segment-max-bytes", type=non_negative_int, metavar="BYTES")
    p.add_argument("--segment-max-age", type=duration, metavar="DURATION")
    p.add_argument("--compact-max-goroutines", type=positive_int, metavar="N")
    p.add_argument(
        "--compact",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="log compaction on or off (default: the server's)",
    )
    p.add_argument("--auto-pause-time", type=duration, metavar="DURATION")
    p.add_argument(
        "--auto-pause-disable-if-subscribers",
        action=argparse.BooleanOptionalAction,
        default=None,
    )
    p.add_argument("--min-isr", type=positive_int, metavar="N")
    p.add_argument(
        "--optimistic-concurrency-control", action=argparse.BooleanOptionalAction, default=None
    )
    p.add_argument("--encryption", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--if-not-exists", action="store_true", help="an existing stream is success")
    add_connection_options(p)
    p.set_defaults(handler=_create)

    p = commands.add_parser("delete", parents=parents, help="delete a stream")
    p.add_argument("name")
    add_connection_options(p)
    p.set_defaults(handler=_delete)

    p = commands.add_parser("pause", parents=parents, help="pause partitions of a stream")
    p.add_argument("name")
    _partitions_option(p)
    p.add_argument(
        "--resume-all",
        action="store_true",
        help="a publish to any partition resumes them all",
    )
    add_connection_options(p)
    p.set_defaults(handler=_pause)

    p = commands.add_parser(
        "readonly", parents=parents, help="make partitions of a stream readonly (or writable)"
    )
    p.add_argument("name")
    _partitions_option(p)
    p.add_argument("--off", action="store_true", help="make them writable again")
    add_connection_options(p)
    p.set_defaults(handler=_readonly)

    p = commands.add_parser(
        "describe", parents=parents, help="a stream's partitions: leader, replicas, offsets"
    )
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="one JSON object per partition")
    add_connection_options(p)
    p.set_defaults(handler=_describe)


def _partitions_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--partition",
        "-p",
        type=non_negative_int,
        action="append",
        dest="partitions",
        metavar="N",
        help="a partition (repeatable; default: all)",
    )


def _list(args: argparse.Namespace) -> int:
    with client(args) as c:
        metadata = c.fetch_metadata()
    streams = sorted(
        (s for s in metadata.streams.values() if args.all or not s.name.startswith("__")),
        key=lambda s: s.name,
    )
    if args.json:
        for s in streams:
            json_line(
                {
                    "name": s.name,
                    "subject": s.subject,
                    "partitions": len(s.partitions),
                    "created": None if s.creation_time is None else when(s.creation_time),
                }
            )
        return 0
    print_table(
        f"{len(streams)} stream(s)",
        ("name", "subject", "partitions", "created"),
        ((s.name, s.subject, len(s.partitions), when(s.creation_time)) for s in streams),
    )
    return 0


def _create(args: argparse.Namespace) -> int:
    subject = args.subject or args.name
    with client(args) as c:
        try:
            c.create_stream(
                subject,
                args.name,
                group=args.group,
                replication_factor=args.replication_factor,
                max_replication=args.max_replication,
                partitions=args.partitions,
                retention_max_bytes=args.retention_max_bytes,
                retention_max_messages=args.retention_max_messages,
                retention_max_age=args.retention_max_age,
                cleaner_interval=args.cleaner_interval,
                segment_max_bytes=args.segment_max_bytes,
                segment_max_age=args.segment_max_age,
                compact_max_goroutines=args.compact_max_goroutines,
                compact_enabled=args.compact,
                auto_pause_time=args.auto_pause_time,
                auto_pause_disable_if_subscribers=args.auto_pause_disable_if_subscribers,
                min_isr=args.min_isr,
                optimistic_concurrency_control=args.optimistic_concurrency_control,
                encryption=args.encryption,
            )
        except StreamExistsError:
            if not args.if_not_exists:
                raise
            say(f"stream {args.name!r} exists already")
            return 0
    print(f"created stream {args.name} (subject {subject}, {args.partitions} partition(s))")
    return 0


def _delete(args: argparse.Namespace) -> int:
    with client(args) as c:
        c.delete_stream(args.name)
    print(f"deleted stream {args.name}")
    return 0


def _which(partitions: list[int] | None) -> str:
    return "all partitions" if not partitions else "partition(s) " + ", ".join(map(str, partitions))


def _pause(args: argparse.Namespace) -> int:
    with client(args) as c:
        c.pause_stream(args.name, args.partitions, resume_all=args.resume_all)
    print(f"paused {_which(args.partitions)} of stream {args.name}")
    return 0


def _readonly(args: argparse.Namespace) -> int:
    with client(args) as c:
        c.set_stream_readonly(args.name, args.partitions, readonly=not args.off)
    state = "writable" if args.off else "readonly"
    print(f"made {_which(args.partitions)} of stream {args.name} {state}")
    return 0


def partition_rows(partitions: list[PartitionInfo]) -> list[tuple[object, ...]]:
    """Rows of :data:`_PARTITION_COLUMNS` for a partition table."""
    return [
        (
            p.id,
            p.leader.id if p.leader else "-",
            ",".join(b.id for b in p.replicas),
            ",".join(b.id for b in p.isr),
            p.high_watermark,
            p.newest_offset,
            "yes" if p.paused else "no",
            "yes" if p.readonly else "no",
        )
        for p in partitions
    ]


def _describe(args: argparse.Namespace) -> int:
    with client(args) as c:
        stream = c.fetch_metadata([args.name]).stream(args.name)
        # The leader's own view has current offsets; a paused partition has no
        # active leader to ask (the call would wait out its deadline).
        partitions = [
            p if p.paused else c.fetch_partition_metadata(args.name, p.id)
            for p in stream.partitions.values()
        ]
    if args.json:
        for p in partitions:
            json_line(
                {
                    "stream": args.name,
                    "partition": p.id,
                    "leader": p.leader.id if p.leader else None,
                    "replicas": [b.id for b in p.replicas],
                    "isr": [b.id for b in p.isr],
                    "high_watermark": p.high_watermark,
                    "newest_offset": p.newest_offset,
                    "paused": p.paused,
                    "readonly": p.readonly,
                }
            )
        return 0
    print_table(
        f"stream {stream.name} (subject {stream.subject}, created {when(stream.creation_time)})",
        _PARTITION_COLUMNS,
        partition_rows(partitions),
    )
    return 0
