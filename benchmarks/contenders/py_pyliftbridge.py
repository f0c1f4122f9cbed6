"""pyliftbridge's rows in compare.py (temporary until `pyliftbridge bench` takes them)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time

import pyliftbridge
from pyliftbridge import AckPolicy, AsyncClient, Client, KeyPartitioner


def _percentiles(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "p99_9": 0.0, "max": 0.0}
    latencies.sort()
    n = len(latencies) - 1

    def at(q: float) -> float:
        return latencies[int(q * n)] * 1000

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "p99_9": at(0.999), "max": at(1.0)}


def _publish_kwargs(args: argparse.Namespace, i: int) -> dict:
    kwargs: dict = {"ack_policy": AckPolicy[args.ack_policy.upper()]}
    if args.partitions > 1:
        kwargs["key"] = b"key-%d" % (i % args.keys)
        kwargs["partitioner"] = KeyPartitioner()
    return kwargs


def run_sync(args: argparse.Namespace, value: bytes) -> dict:
    latencies: list[float] = []
    with Client(args.brokers, max_inflight_publishes=args.window, ack_timeout=10) as client:
        if args.mode == "consume":
            return _consume_sync(client, args)
        _create(client.create_stream, args)
        cpu0, t0 = time.process_time(), time.perf_counter()
        if args.mode == "sync":
            for i in range(args.messages):
                sent = time.perf_counter()
                client.publish(args.stream, value, **_publish_kwargs(args, i))
                latencies.append(time.perf_counter() - sent)
        else:
            for i in range(args.messages):
                client.publish_async(args.stream, value, **_publish_kwargs(args, i))
            client.flush()
        return _result(args, time.perf_counter() - t0, time.process_time() - cpu0, latencies)


def _consume_sync(client: Client, args: argparse.Namespace) -> dict:
    count = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    with client.subscribe_all(args.stream, start_at="earliest") as messages:
        for _ in messages:
            count += 1
            if count == args.messages:
                break
    return _result(args, time.perf_counter() - t0, time.process_time() - cpu0, [])


async def run_async(args: argparse.Namespace, value: bytes) -> dict:
    latencies: list[float] = []
    async with AsyncClient(
        args.brokers, max_inflight_publishes=args.window, ack_timeout=10
    ) as client:
        if args.mode == "consume":
            count = 0
            cpu0, t0 = time.process_time(), time.perf_counter()
            async with await client.subscribe_all(args.stream, start_at="earliest") as messages:
                async for _ in messages:
                    count += 1
                    if count == args.messages:
                        break
            return _result(args, time.perf_counter() - t0, time.process_time() - cpu0, [])
        try:
            await client.create_stream(args.stream, args.stream, partitions=args.partitions)
        except pyliftbridge.StreamExistsError:
            pass
        cpu0, t0 = time.process_time(), time.perf_counter()
        if args.mode == "sync":
            for i in range(args.messages):
                sent = time.perf_counter()
                await client.publish(args.stream, value, **_publish_kwargs(args, i))
                latencies.append(time.perf_counter() - sent)
        else:
            for i in range(args.messages):
                await client.publish_async(args.stream, value, **_publish_kwargs(args, i))
            await client.flush()
        return _result(args, time.perf_counter() - t0, time.process_time() - cpu0, latencies)


def _create(create, args: argparse.Namespace) -> None:
    try:
        create(args.stream, args.stream, partitions=args.partitions)
    except pyliftbridge.StreamExistsError:
        pass


def _result(args: argparse.Namespace, seconds: float, cpu: float, latencies: list[float]) -> dict:
    return {
        "mode": args.mode,
        "client": args.client,
        "implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "messages": args.messages,
        "message_size": args.size,
        "ack_policy": args.ack_policy,
        "window": args.window,
        "partitions": args.partitions,
        "duration": seconds,
        "cpu_seconds": cpu,
        "messages_per_second": args.messages / seconds,
        "mb_per_second": args.messages * args.size / seconds / 1e6,
        "latency_ms": _percentiles(latencies),
        "errors": 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--mode", choices=["publish", "sync", "consume"], default="publish")
    parser.add_argument("--client", choices=["sync", "async"], default="sync")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--ack-policy", default="leader")
    args = parser.parse_args()
    value = os.urandom(args.size)
    if args.client == "sync":
        result = run_sync(args, value)
    else:
        result = asyncio.run(run_async(args, value))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
