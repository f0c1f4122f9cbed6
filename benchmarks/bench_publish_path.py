"""CPU per publish of the blocking client's publish path, without a network.

``publish_async`` -> the publish stream's queue -> a batch of acks handed to
its sink -> futures resolved: everything the client does per message above
the HTTP/2 layer, against a stand-in call that drops what is queued. Used to
measure what ``client.stats()`` counting costs: run it with ``PYTHONPATH``
pointing at two builds' ``src`` in turn (see benchmarks/README.md).

    python benchmarks/bench_publish_path.py [--messages N] [--rounds R] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Any

from pyliftbridge._pb import api_pb2
from pyliftbridge._sync._publishing import Publishing
from pyliftbridge.models import AckPolicy

#: Acks handed to the sink at once (a read brings many under load).
ACK_BATCH = 64


class _Call:
    done = False
    sink: Any = None

    def queue(self, payload: bytes) -> None:
        pass

    def flush(self) -> None:
        pass

    def flush_soon(self) -> None:
        pass

    def set_sink(self, sink: Any) -> None:
        self.sink = sink

    def close(self) -> None:
        pass


class _Channel:
    def __init__(self) -> None:
        self.call = _Call()

    def open_call(self, path: str, **options: Any) -> _Call:
        return self.call


class _Client:
    """What Publishing asks of its client, with one broker and no metadata."""

    _telemetry = None
    _metadata = None

    def __init__(self) -> None:
        self.channel = _Channel()

    def _check_open(self) -> None:
        pass

    def _broker_addresses(self) -> list[str]:
        return ["broker:9292"]

    def _channel(self, address: str) -> _Channel:
        return self.channel

    def _translate(self, address: str) -> str:
        return address

    def _spawn_worker(self, *args: Any, **kwargs: Any) -> None:
        pass

    def _wake_expiry(self) -> None:
        pass

    def _count_rpc(self, method: str, error: Any) -> None:
        pass


def run(messages: int, size: int) -> float:
    """Microseconds of CPU per publish, acks included."""
    ids = [f"c{i}" for i in range(messages)]
    acks = [
        api_pb2.PublishResponse(
            ack=api_pb2.Ack(stream="s", correlationId=cid, offset=i, ackPolicy=1)
        ).SerializeToString()
        for i, cid in enumerate(ids)
    ]
    value = b"x" * size
    client = _Client()
    publishing = Publishing(client, 5.0, 4096)  # type: ignore[arg-type]
    futures = []
    started = time.process_time()
    for first in range(0, messages, ACK_BATCH):
        last = min(first + ACK_BATCH, messages)
        for i in range(first, last):
            futures.append(
                publishing.publish(
                    "s",
                    value,
                    None,
                    None,
                    0,
                    None,
                    AckPolicy.LEADER,
                    None,
                    ids[i],
                    None,
                    write_now=False,
                )
            )
        client.channel.call.sink.on_messages(acks[first:last])
    elapsed = time.process_time() - started
    assert all(f.result(0).offset == i for i, f in enumerate(futures))
    return elapsed / messages * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rounds = [run(args.messages, args.size) for _ in range(args.rounds)]
    result = {
        "implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "messages": args.messages,
        "rounds_us_per_publish": [round(r, 3) for r in rounds],
        "best_us_per_publish": round(min(rounds), 3),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            " ".join(f"{r:.3f}" for r in rounds), "us/publish; best", result["best_us_per_publish"]
        )


if __name__ == "__main__":
    main()
