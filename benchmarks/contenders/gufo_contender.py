"""gufo-liftbridge (asyncio, on grpcio) as a compare.py contender: publish_bulk and subscribe."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

from _common import parse_args, report
from gufo.liftbridge.client import LiftbridgeClient
from gufo.liftbridge.error import ErrorAlreadyExists
from gufo.liftbridge.types import AckPolicy, StartPosition


async def main() -> None:
    args = parse_args(("publish", "consume"))
    async with LiftbridgeClient([args.brokers]) as client:
        if args.mode == "consume":
            count = 0
            cpu0, t0 = time.process_time(), time.perf_counter()
            async for _ in client.subscribe(
                args.stream, partition=0, start_position=StartPosition.EARLIEST
            ):
                count += 1
                if count == args.messages:
                    break
            report(args, "gufo-liftbridge", time.perf_counter() - t0, time.process_time() - cpu0)
            return
        with contextlib.suppress(ErrorAlreadyExists):
            await client.create_stream(
                args.stream, subject=args.stream, partitions=args.partitions, wait_for_stream=True
            )
        value = os.urandom(args.size)
        policy = AckPolicy[args.ack_policy.upper()]
        requests = (
            client.get_publish_request(value, stream=args.stream, ack_policy=policy)
            for _ in range(args.messages)
        )
        acked = 0
        cpu0, t0 = time.process_time(), time.perf_counter()
        async for _ in client.publish_bulk(requests):
            acked += 1
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        report(args, "gufo-liftbridge", seconds, cpu, errors=args.messages - acked)


if __name__ == "__main__":
    asyncio.run(main())
