"""pyliftbridge's rows in compare.py: Client or AsyncClient, publishing or consuming."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

from _common import parse_args, report

from pyliftbridge import AckPolicy, AsyncClient, Client, KeyPartitioner, StreamExistsError


def publish_options(args: Any) -> list[dict[str, Any]]:
    """The keyword arguments of each publish, made before timing starts."""
    policy = AckPolicy[args.ack_policy.upper()]
    if args.partitions <= 1:
        return [{"ack_policy": policy}] * args.messages
    partitioner = KeyPartitioner()
    return [
        {"ack_policy": policy, "key": b"key-%d" % (i % args.keys), "partitioner": partitioner}
        for i in range(args.messages)
    ]


def run_sync(args: Any) -> None:
    value = os.urandom(args.size)
    options = publish_options(args)
    latencies: list[float] = []
    with Client(args.brokers, max_inflight_publishes=args.window, ack_timeout=10) as client:
        if args.mode == "consume":
            count = 0
            cpu0, t0 = time.process_time(), time.perf_counter()
            subscribe = client.subscribe_all if args.partitions > 1 else client.subscribe
            with subscribe(args.stream, start_at="earliest") as messages:
                for _ in messages:
                    count += 1
                    if count == args.messages:
                        break
            report(args, "Client", time.perf_counter() - t0, time.process_time() - cpu0)
            return
        with contextlib.suppress(StreamExistsError):
            client.create_stream(args.stream, args.stream, partitions=args.partitions)
        client.fetch_metadata([args.stream])
        cpu0, t0 = time.process_time(), time.perf_counter()
        if args.mode == "sync":
            for kwargs in options:
                sent = time.perf_counter()
                client.publish(args.stream, value, **kwargs)
                latencies.append(time.perf_counter() - sent)
        else:
            for kwargs in options:
                client.publish_async(args.stream, value, **kwargs)
            client.flush()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    report(args, "Client", seconds, cpu, latencies)


async def run_async(args: Any) -> None:
    value = os.urandom(args.size)
    options = publish_options(args)
    latencies: list[float] = []
    async with AsyncClient(
        args.brokers, max_inflight_publishes=args.window, ack_timeout=10
    ) as client:
        if args.mode == "consume":
            count = 0
            cpu0, t0 = time.process_time(), time.perf_counter()
            subscribe = client.subscribe_all if args.partitions > 1 else client.subscribe
            async with await subscribe(args.stream, start_at="earliest") as messages:
                async for _ in messages:
                    count += 1
                    if count == args.messages:
                        break
            report(args, "AsyncClient", time.perf_counter() - t0, time.process_time() - cpu0)
            return
        with contextlib.suppress(StreamExistsError):
            await client.create_stream(args.stream, args.stream, partitions=args.partitions)
        await client.fetch_metadata([args.stream])
        cpu0, t0 = time.process_time(), time.perf_counter()
        if args.mode == "sync":
            for kwargs in options:
                sent = time.perf_counter()
                await client.publish(args.stream, value, **kwargs)
                latencies.append(time.perf_counter() - sent)
        else:
            for kwargs in options:
                await client.publish_async(args.stream, value, **kwargs)
            await client.flush()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    report(args, "AsyncClient", seconds, cpu, latencies)


def main() -> None:
    args = parse_args()
    if args.client == "sync":
        run_sync(args)
    else:
        asyncio.run(run_async(args))


if __name__ == "__main__":
    main()
