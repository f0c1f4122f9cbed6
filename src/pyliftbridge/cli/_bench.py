"""``pyliftbridge bench`` (and ``demo``): publish or consume throughput, verified.

Publish mode sends ``--messages`` (or for ``--duration``) messages through one
client, waits for every ack, then (unless ``--no-verify``) reads everything
back and checks count, order, keys, partitions and bytes before it reports a
figure: a benchmark that loses messages reports an error, not a number.
Consume mode reads ``--messages`` messages of an existing stream from the
start of every partition.

Without ``--brokers`` (or ``$LIFTBRIDGE_BROKERS``) a local single-node
Liftbridge is started for the run (``pyliftbridge.testing``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .. import AckPolicy, StreamExistsError
from ._bench_report import print_text, report, write_csv, write_json
from ._bench_run import Connect, Plan, Timing, consume, publish, read_back, settled_offsets
from ._common import (
    ack_policy,
    add_connection_options,
    async_client,
    brokers_of,
    client,
    positive_float,
    positive_int,
    say,
)
from ._errors import CliError, UsageError, require
from ._measure import LatencyHistogram, Meter
from ._workload import HEADER_SIZE, Workload

if TYPE_CHECKING:
    from .. import Client

__all__ = ["register"]


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``bench`` and ``demo``."""
    for name, default_messages, text in (
        ("bench", 100_000, "measure publish or consume throughput and latency (verified)"),
        ("demo", 20_000, "start a local Liftbridge (unless --brokers), publish, read back, report"),
    ):
        p = sub.add_parser(name, parents=parents, help=text, description=text)
        p.add_argument("--stream", help="stream to use (publish: created if missing)")
        p.add_argument("--mode", choices=("publish", "consume"), default="publish")
        p.add_argument("--client", choices=("sync", "async"), default="sync")
        p.add_argument(
            "--sync",
            action="store_true",
            help="publish one message at a time, waiting for each ack (latency mode)",
        )
        amount = p.add_mutually_exclusive_group()
        amount.add_argument(
            "--messages", "-n", type=positive_int, help=f"messages (default {default_messages:,})"
        )
        amount.add_argument(
            "--duration", type=positive_float, metavar="SECONDS", help="publish for this long"
        )
        p.add_argument("--size", type=positive_int, default=256, help="message size in bytes")
        p.add_argument("--window", type=positive_int, default=1024, help="publishes in flight")
        p.add_argument("--publishers", type=positive_int, default=1, help="concurrent publishers")
        p.add_argument("--partitions", type=positive_int, default=1, help="partitions (new stream)")
        p.add_argument(
            "--key-partitioner",
            action="store_true",
            help="random keys over --keys distinct keys, partition by key",
        )
        p.add_argument("--keys", type=positive_int, default=100, help="distinct keys (default 100)")
        p.add_argument("--ack-policy", type=ack_policy, default=AckPolicy.LEADER)
        p.add_argument("--ack-timeout", type=positive_float, default=10.0, metavar="SECONDS")
        p.add_argument("--no-verify", action="store_true", help="skip the read-back check")
        p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        p.add_argument("--csv", metavar="FILE", help="append a summary row to FILE")
        p.add_argument("--plot", metavar="FILE.png", help="throughput and latency charts")
        add_connection_options(
            p,
            brokers_help="brokers to measure (default: $LIFTBRIDGE_BROKERS, "
            "or a local server started for the run)",
        )
        p.set_defaults(handler=_bench, default_messages=default_messages)


def _check(args: argparse.Namespace) -> None:
    if args.size < 1:
        raise UsageError("--size must be at least 1 byte")
    if args.size < HEADER_SIZE and not args.no_verify and args.mode == "publish":
        raise UsageError(
            f"--size below {HEADER_SIZE} bytes leaves no room for the read-back check: "
            "add --no-verify"
        )
    if args.mode == "consume":
        if args.stream is None:
            raise UsageError("--mode consume reads an existing --stream")
        if args.duration is not None:
            raise UsageError("--mode consume takes --messages, not --duration")
    if args.plot:
        from ._plot import load_matplotlib

        load_matplotlib()


@contextlib.contextmanager
def _brokers(args: argparse.Namespace) -> Iterator[list[str]]:
    if args.brokers:
        yield brokers_of(args)
        return
    from ..testing import LiftbridgeServer

    say("no --brokers given: starting a local Liftbridge server ...")
    with LiftbridgeServer() as server:
        say(f"local Liftbridge listening on {server.address}")
        yield [server.address]


def _bench(args: argparse.Namespace) -> int:
    _check(args)
    # Both are needed by every run: fail before starting anything.
    histogram = LatencyHistogram()
    require("rich.progress", package="rich", feature="pyliftbridge bench")
    if args.messages is None and args.duration is None:
        args.messages = args.default_messages
    with _brokers(args) as brokers:
        options = {"max_inflight_publishes": args.window, "ack_timeout": args.ack_timeout}
        connect = Connect(
            blocking=functools.partial(client, args, brokers, **options),
            asyncio=functools.partial(async_client, args, brokers, **options),
            use_asyncio=args.client == "async",
        )
        if args.mode == "consume":
            meter = Meter(None)
            timing = consume(args.stream, args.messages, meter, connect)
            if meter.done_count < args.messages:
                raise CliError(
                    f"stream {args.stream} holds only {meter.done_count} of the "
                    f"{args.messages} messages asked for"
                )
            latencies = None
            result = report(
                args, timing, meter, None, partitions=timing.partitions, stream=args.stream
            )
        else:
            latencies = None if args.ack_policy is AckPolicy.NONE else histogram
            result, timing = _publish_run(args, connect, latencies)
    if args.csv:
        write_csv(args.csv, result)
    if args.plot:
        from ._plot import plot

        plot(args.plot, result, timing.rates, None if latencies is None else latencies.curve_ms())
    if args.json:
        write_json(result)
    else:
        print_text(result)
    if result["errors"]:
        raise CliError(f"{result['errors']} publish(es) failed; the first: {result['first_error']}")
    return 0


def _publish_run(
    args: argparse.Namespace, connect: Connect, histogram: LatencyHistogram | None
) -> tuple[dict[str, Any], Timing]:
    temporary = args.stream is None
    stream = args.stream or f"bench-{uuid.uuid4().hex[:8]}"
    with connect.blocking() as c:
        with contextlib.suppress(StreamExistsError):
            c.create_stream(stream, stream, partitions=args.partitions)
        try:
            # An existing stream may hold messages already: check only what follows.
            before = settled_offsets(c, stream, wait_for_stable=False)
            workload = Workload(
                size=args.size,
                partitions=len(before),
                publishers=args.publishers,
                keys=args.keys if args.key_partitioner else None,
                verify=not args.no_verify,
            )
            plan = Plan(
                stream=stream,
                workload=workload,
                messages=args.messages,
                seconds=args.duration,
                publishers=args.publishers,
                ack_policy=args.ack_policy,
                one_at_a_time=args.sync,
                flush_timeout=args.ack_timeout + 30.0,
            )
            meter = Meter(histogram)
            timing = publish(plan, meter, connect)
            received = None
            if not args.no_verify:
                received = _verify(c, stream, before, workload, args.ack_policy)
        finally:
            if temporary:
                c.delete_stream(stream)
    result = report(args, timing, meter, histogram, partitions=len(before), stream=stream)
    _lost(result, timing, meter, received, args.ack_policy)
    return result, timing


def _verify(
    c: Client, stream: str, before: dict[int, int], workload: Workload, policy: AckPolicy
) -> int:
    if policy is AckPolicy.NONE:
        settled_offsets(c, stream, wait_for_stable=True)
    say("reading everything back to check it ...")
    return workload.verify(read_back(c, stream, before), stream)


def _lost(
    result: dict[str, Any], timing: Timing, meter: Meter, received: int | None, policy: AckPolicy
) -> None:
    result["verified"] = received is not None
    result["read_back"] = received
    if received is None:
        result["lost"] = None
        return
    if policy is AckPolicy.NONE:
        # At most once: losses are allowed, and reported.
        result["lost"] = timing.sent - received
        return
    # A publish that failed (ack timeout...) may or may not have been stored.
    result["lost"] = max(0, meter.done_count - received)
    if result["lost"]:
        raise CliError(f"{meter.done_count} messages were acked but only {received} were read back")
