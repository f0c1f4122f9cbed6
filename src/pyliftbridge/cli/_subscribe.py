"""``pyliftbridge subscribe STREAM`` and ``pyliftbridge activity``: tails until Ctrl-C."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from typing import Any, Callable

from .. import ActivityEvent, Message
from ._common import (
    add_connection_options,
    client,
    non_negative_int,
    positive_int,
    start_position,
    stop_position,
)
from ._errors import UsageError
from ._output import json_line, text_of, when

__all__ = ["register"]

_GROUP_STARTS = ("new", "earliest", "latest")


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``subscribe`` and ``activity``."""
    p = sub.add_parser(
        "subscribe",
        parents=parents,
        help="print a stream's messages (Ctrl-C ends)",
        description="Print messages of a stream as they come; Ctrl-C ends with status 0.",
    )
    p.add_argument("stream")
    p.add_argument(
        "--from",
        dest="start",
        type=start_position,
        default="new",
        metavar="POSITION",
        help="new (default), earliest, latest, an OFFSET, an ISO time, or a DURATION ago (10m)",
    )
    p.add_argument(
        "--to",
        dest="stop",
        type=stop_position,
        metavar="POSITION",
        help="stop after: latest, an OFFSET or an ISO time (default: follow)",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--partition", "-p", type=non_negative_int, default=0)
    which.add_argument(
        "--all-partitions", "-a", action="store_true", help="every partition of the stream"
    )
    which.add_argument(
        "--group",
        "-g",
        metavar="ID",
        help="read as a member of consumer group ID (the group shares the partitions)",
    )
    p.add_argument("--limit", "-n", type=positive_int, help="stop after N messages")
    p.add_argument("--format", "-f", choices=("text", "json", "raw"), default="text")
    add_connection_options(p)
    p.set_defaults(handler=_subscribe)

    p = sub.add_parser(
        "activity",
        parents=parents,
        help="print the cluster's activity stream (Ctrl-C ends)",
        description="Print the events of the __activity stream (needs "
        "activity.stream.enabled on the server); Ctrl-C ends with status 0.",
    )
    p.add_argument(
        "--from",
        dest="start",
        type=start_position,
        default="earliest",
        metavar="POSITION",
        help="earliest (default), new, latest, an OFFSET, an ISO time or a DURATION ago",
    )
    p.add_argument("--limit", "-n", type=positive_int, help="stop after N events")
    p.add_argument("--format", "-f", choices=("text", "json"), default="text")
    add_connection_options(p)
    p.set_defaults(handler=_activity)


def _tail(items: Iterable[Any], limit: int | None, emit: Callable[[Any], None]) -> None:
    """Emit items until the source ends, ``limit`` is reached or Ctrl-C."""
    count = 0
    try:
        for item in items:
            emit(item)
            count += 1
            if limit is not None and count >= limit:
                break
    except KeyboardInterrupt:
        pass  # the way to end a tail: not an error


def _messages(args: argparse.Namespace, stack: ExitStack) -> Iterator[Message]:
    c = stack.enter_context(client(args))
    if args.group is not None:
        if args.stop is not None:
            raise UsageError("--to does not apply to a consumer group")
        if args.start not in _GROUP_STARTS:
            raise UsageError("with --group, --from is new, earliest or latest")
        consumer = stack.enter_context(c.create_consumer(args.group, auto_offset=args.start))
        consumer.subscribe([args.stream])
        return iter(consumer)
    if args.all_partitions:
        return iter(
            stack.enter_context(
                c.subscribe_all(args.stream, start_at=args.start, stop_at=args.stop)
            )
        )
    return iter(
        stack.enter_context(
            c.subscribe(
                args.stream, partition=args.partition, start_at=args.start, stop_at=args.stop
            )
        )
    )


def _subscribe(args: argparse.Namespace) -> int:
    emit = {"text": _print_text, "json": _print_json, "raw": _print_raw}[args.format]
    with ExitStack() as stack:
        try:
            messages = _messages(args, stack)
        except KeyboardInterrupt:
            return 0
        _tail(messages, args.limit, emit)
    return 0


def _print_text(message: Message) -> None:
    key = "" if message.key is None else "key=" + _text(message.key) + " "
    sys.stdout.write(
        f"{message.partition}:{message.offset} {when(message.timestamp)} {key}"
        f"{_text(message.value)}\n"
    )
    sys.stdout.flush()


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")


def _print_json(message: Message) -> None:
    binary: list[str] = []
    record: dict[str, Any] = {
        "stream": message.stream,
        "partition": message.partition,
        "offset": message.offset,
        "timestamp": when(message.timestamp),
        "key": None if message.key is None else text_of(message.key, "key", binary),
        "value": text_of(message.value, "value", binary),
        "headers": {
            name: text_of(value, f"headers.{name}", binary)
            for name, value in message.headers.items()
        },
    }
    if binary:
        # Fields that were not UTF-8 are base64; say which, so nothing is guessed.
        record["base64"] = binary
    json_line(record)


def _print_raw(message: Message) -> None:
    sys.stdout.buffer.write(message.value + b"\n")
    sys.stdout.buffer.flush()


def _activity(args: argparse.Namespace) -> int:
    emit = _activity_json if args.format == "json" else _activity_text
    with client(args) as c:
        try:
            events = c.activity(start_at=args.start)
        except KeyboardInterrupt:
            return 0
        with events:
            _tail(events, args.limit, emit)
    return 0


def _activity_fields(event: ActivityEvent) -> dict[str, Any]:
    fields: dict[str, Any] = {"id": event.id, "op": event.op.name}
    optional: dict[str, Any] = {
        "stream": event.stream,
        "partitions": list(event.partitions) or None,
        "resume_all": event.resume_all or None,
        "readonly": event.readonly if event.op.name == "SET_STREAM_READONLY" else None,
        "group": event.group_id,
        "consumer": event.consumer_id,
        "streams": list(event.streams) or None,
        "expired": event.expired or None,
    }
    fields.update((k, v) for k, v in optional.items() if v is not None)
    return fields


def _activity_text(event: ActivityEvent) -> None:
    fields = _activity_fields(event)
    head = f"#{fields.pop('id')} {fields.pop('op')}"
    rest = " ".join(
        f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in fields.items()
    )
    sys.stdout.write(f"{head} {rest}".rstrip() + "\n")
    sys.stdout.flush()


def _activity_json(event: ActivityEvent) -> None:
    json_line(_activity_fields(event))
