"""What the gRPC-over-h2 core costs per message, next to what the message itself costs.

Two in-memory workloads shaped like real Liftbridge traffic (no sockets):

send
    A pipelined publisher on a ``/proto.API/PublishAsync`` call. For each
    ``PublishRequest`` it calls ``SerializeToString()`` and
    ``GrpcConnection.send_message()``. Every ``--flush-every`` messages, and at
    the end, it calls ``data_to_send()``; the returned bytes stand for one
    socket write. The server peer granted a 2**31-1 window beforehand, so
    flow control never stops the writer, and the server is not timed.
    Floor: serialize, add the 5-byte prefix, one ``b"".join`` per flush.

recv
    A Subscribe stream framed the way grpc-go writes it: response HEADERS, the
    empty handshake message, then one DATA frame per ``Message``. It is
    recorded once with a server-side ``h2`` connection and fed to
    ``GrpcConnection.receive_data`` in ``--chunk-size`` reads. Each message is
    parsed with ``Message.FromString``, handed to the application, and
    acknowledged; ``data_to_send()`` runs whenever ``acknowledge`` asks for a
    flush. ``recv_h2`` is the same run with ``fast_path=False`` (h2's own
    receive path), for comparison.
    Floor: walk the same gRPC messages (HTTP/2 framing stripped) by length
    prefix and parse each one.

Noise (this runs on shared 2-vCPU VMs) is handled in three ways:

* Interleaving is fine-grained. Inside a round, our code and its floor take
  turns on small blocks of the same work: a few flushes' worth of publishes,
  or one read of the Subscribe stream. The floor's block is timed right next
  to ours, and the order alternates from block to block.
* Time is process CPU time (``--clock cpu``), so time spent descheduled does
  not count.
* Every figure is a median over rounds. A ratio (ours / floor, in msg/s) is
  computed per round and its median is reported, which can differ slightly
  from the quotient of the two median rates.

Warm-up rounds run first (PyPy's JIT needs them). Every round is checked
outside the timed blocks: the messages that come out equal the messages that
went in, in order and in number.

Run ``python benchmarks/bench_framing.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import struct
import sys
import time
import uuid
from typing import Any, Callable

import google.protobuf
import h2
import h2.config
import h2.connection
import h2.events
import h2.settings
from google.protobuf.internal import api_implementation
from hyperframe.frame import WindowUpdateFrame

from pyliftbridge._core.connection import (
    DEFAULT_CONNECTION_WINDOW,
    DEFAULT_STREAM_WINDOW,
    GrpcConnection,
)
from pyliftbridge._core.events import CallEnded, MessageReceived, ResponseHeaders
from pyliftbridge._pb import api_pb2

AUTHORITY = "liftbridge.bench:9292"
PUBLISH_ASYNC = "/proto.API/PublishAsync"
SUBSCRIBE = "/proto.API/Subscribe"
STREAM = "bench-orders"
SUBJECT = "bench.orders"
MAX_WINDOW = 2**31 - 1
PREFIX = struct.Struct(">BI")
#: Publishes per timed block: whole flushes, at least this many messages.
SEND_BLOCK_MIN = 256

VARIANTS = ("send_floor", "send", "recv_floor", "recv", "recv_h2")
CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.process_time, "wall": time.perf_counter}


# --------------------------------------------------------------------- workload


def make_requests(count: int, value_size: int, seed: int) -> list[Any]:
    """PublishRequests as a PublishAsync publisher sends them."""
    rng = random.Random(seed)
    return [
        api_pb2.PublishRequest(
            stream=STREAM,
            key=b"customer-%d" % rng.randrange(10_000),
            value=rng.randbytes(value_size),
            correlationId=uuid.UUID(int=rng.getrandbits(128), version=4).hex,
            ackPolicy=api_pb2.LEADER,
            expectedOffset=-1,
        )
        for _ in range(count)
    ]


def make_messages(count: int, value_size: int, seed: int) -> list[Any]:
    """Stored messages as the server delivers them to a subscriber."""
    rng = random.Random(seed)
    timestamp = 1_780_000_000_000_000_000
    messages = []
    for offset in range(1_000_000, 1_000_000 + count):
        timestamp += rng.randrange(1_000, 50_000)
        messages.append(
            api_pb2.Message(
                offset=offset,
                key=b"customer-%d" % rng.randrange(10_000),
                value=rng.randbytes(value_size),
                timestamp=timestamp,
                stream=STREAM,
                partition=1,
                subject=SUBJECT,
                headers={"subject": SUBJECT.encode(), "reply": b""},
            )
        )
    return messages


def _server_h2(settings: dict[Any, int]) -> h2.connection.H2Connection:
    config = h2.config.H2Configuration(
        client_side=False,
        header_encoding=None,
        validate_inbound_headers=False,
        validate_outbound_headers=False,
        normalize_inbound_headers=False,
        normalize_outbound_headers=False,
    )
    server = h2.connection.H2Connection(config=config)
    server.local_settings = h2.settings.Settings(client=False, initial_values=settings)
    server.initiate_connection()
    return server


def _window_update(stream_id: int, increment: int) -> bytes:
    return bytes(WindowUpdateFrame(stream_id, window_increment=increment).serialize())


def split_messages(data: bytes) -> list[bytes]:
    """Split a gRPC byte stream into message bodies (independently of the core)."""
    out = []
    pos = 0
    while pos < len(data):
        flag, size = PREFIX.unpack_from(data, pos)
        if flag:
            raise AssertionError("unexpected compressed message")
        out.append(data[pos + 5 : pos + 5 + size])
        pos += 5 + size
    if pos != len(data):
        raise AssertionError("gRPC byte stream ends inside a message")
    return out


# ----------------------------------------------------------------- send side


class SendOurs:
    """A PublishAsync call on a GrpcConnection; blocks of publishes with flushes."""

    name = "send"

    def __init__(self, requests: list[Any], expected: list[bytes], flush_every: int) -> None:
        self.requests = requests
        self.expected = expected
        self.flush_every = flush_every
        client = GrpcConnection(AUTHORITY)
        client.initiate()
        server = _server_h2(
            {
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: MAX_WINDOW,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: 16384,
            }
        )
        server.increment_flow_control_window(MAX_WINDOW - 65535)
        server.receive_data(client.data_to_send())
        client.receive_data(server.data_to_send())
        self.call_id = client.start_call(PUBLISH_ASYNC)
        server.receive_data(client.data_to_send())
        self.client = client
        self.server = server
        self.written: list[bytes] = []

    def block(self, start: int, stop: int) -> None:
        call_id = self.call_id
        send_message = self.client.send_message
        data_to_send = self.client.data_to_send
        write = self.written.append
        requests = self.requests
        step = self.flush_every
        for first in range(start, stop, step):
            for request in requests[first : min(first + step, stop)]:
                send_message(call_id, request.SerializeToString())
            write(data_to_send())

    def check(self) -> None:
        """Decode what was written as the server would, and compare."""
        wire = b"".join(self.written)
        parts = []
        for i in range(0, len(wire), 65536):
            for event in self.server.receive_data(wire[i : i + 65536]):
                if isinstance(event, h2.events.DataReceived):
                    parts.append(event.data)
                elif isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    raise AssertionError(f"{self.name}: the server saw {event}")
        _check_published(self.name, self.expected, b"".join(parts))


class SendFloor:
    """Serialize, prefix and join: the least any publisher has to do."""

    name = "send_floor"

    def __init__(self, requests: list[Any], expected: list[bytes], flush_every: int) -> None:
        self.requests = requests
        self.expected = expected
        self.flush_every = flush_every
        self.written: list[bytes] = []

    def block(self, start: int, stop: int) -> None:
        pack = PREFIX.pack
        join = b"".join
        write = self.written.append
        requests = self.requests
        step = self.flush_every
        for first in range(start, stop, step):
            parts = []
            for request in requests[first : min(first + step, stop)]:
                body = request.SerializeToString()
                parts.append(pack(0, len(body)))
                parts.append(body)
            write(join(parts))

    def check(self) -> None:
        _check_published(self.name, self.expected, b"".join(self.written))


def _check_published(name: str, expected: list[bytes], payload: bytes) -> None:
    bodies = split_messages(payload)
    if len(bodies) != len(expected):
        raise AssertionError(f"{name}: {len(bodies)} messages written, {len(expected)} published")
    if bodies != expected:
        first = next(i for i, (a, b) in enumerate(zip(bodies, expected)) if a != b)
        raise AssertionError(f"{name}: message {first} differs")


# -------------------------------------------------------------- receive side


class SubscribeRecording:
    """The server's bytes for one Subscribe call, recorded once.

    ``preface`` is what grpc-go sends before the call (SETTINGS with
    MAX_FRAME_SIZE 16384, and the ACK of ours). ``chunks`` is the response cut
    into reads: HEADERS (:status 200, content-type application/grpc), the empty
    "subscription created" message, then one DATA frame per message.

    The server h2 is told it may keep sending, by WINDOW_UPDATEs made up here
    the way a client that keeps up would send them. The replaying client
    acknowledges as it consumes, so its real window never runs out. If it did,
    the call would end with a flow-control error and the check would fail.
    """

    def __init__(self, messages: list[Any], chunk_size: int) -> None:
        client = GrpcConnection(AUTHORITY)
        client.initiate()
        server = _server_h2({h2.settings.SettingCodes.MAX_FRAME_SIZE: 16384})
        server.receive_data(client.data_to_send())
        self.preface = bytes(server.data_to_send())
        client.receive_data(self.preface)
        self.request = api_pb2.SubscribeRequest(
            stream=STREAM, partition=1, startPosition=api_pb2.EARLIEST
        ).SerializeToString()
        call_id = client.start_call(SUBSCRIBE)
        client.send_message(call_id, self.request, end=True)
        events = server.receive_data(client.data_to_send())
        (sid,) = {e.stream_id for e in events if isinstance(e, h2.events.RequestReceived)}
        server.data_to_send()
        server.send_headers(sid, [(b":status", b"200"), (b"content-type", b"application/grpc")])
        wire = [bytes(server.data_to_send())]
        size = len(wire[0])
        handshake = PREFIX.pack(0, 0)
        payloads = [handshake]
        ends = []  # where each message's DATA frame ends in the stream
        for message in [None, *messages]:
            if message is None:
                grpc_message = handshake
            else:
                body = message.SerializeToString()
                grpc_message = PREFIX.pack(0, len(body)) + body
                payloads.append(grpc_message)
            if server.local_flow_control_window(sid) < len(grpc_message):
                stream_window = server.streams[sid].outbound_flow_control_window
                stream_grant = DEFAULT_STREAM_WINDOW - stream_window
                conn_grant = DEFAULT_CONNECTION_WINDOW - server.outbound_flow_control_window
                server.receive_data(
                    _window_update(sid, stream_grant) + _window_update(0, conn_grant)
                )
            server.send_data(sid, grpc_message)
            frame = bytes(server.data_to_send())
            wire.append(frame)
            size += len(frame)
            ends.append(size)
        stream = b"".join(wire)
        self.chunks = [stream[i : i + chunk_size] for i in range(0, len(stream), chunk_size)]
        #: Messages completed by each read (a frame is whole in the read it ends in).
        self.counts = [0] * len(self.chunks)
        for end in ends:
            self.counts[(end - 1) // chunk_size] += 1
        #: The gRPC byte stream without HTTP/2 framing, for the floor.
        self.grpc_payload = b"".join(payloads)
        #: What the application should get: the empty handshake, then the messages.
        self.expected = [api_pb2.Message(), *messages]


class RecvOurs:
    """A Subscribe call on a GrpcConnection; one block is one read."""

    def __init__(self, rec: SubscribeRecording, fast_path: bool) -> None:
        self.name = "recv" if fast_path else "recv_h2"
        client = GrpcConnection(AUTHORITY, fast_path=fast_path)
        client.initiate()
        client.data_to_send()
        client.receive_data(rec.preface)
        call_id = client.start_call(SUBSCRIBE)
        client.send_message(call_id, rec.request, end=True)
        client.data_to_send()
        self.client = client
        self.others: list[Any] = []
        self.written: list[bytes] = []

    def block(self, chunk: bytes) -> list[Any]:
        client = self.client
        acknowledge = client.acknowledge
        parse = api_pb2.Message.FromString
        received: list[Any] = []
        deliver = received.append
        for event in client.receive_data(chunk):
            if type(event) is MessageReceived:
                deliver(parse(event.data))
                if acknowledge(event.call_id, event.flow_controlled_length):
                    self.written.append(client.data_to_send())
            else:
                self.others.append(event)
        return received

    def check(self) -> None:
        for event in self.others:
            if not isinstance(event, ResponseHeaders):
                detail = event.status if isinstance(event, CallEnded) else event
                raise AssertionError(f"{self.name}: unexpected event {detail!r}")
        if len(self.others) != 1:
            raise AssertionError(f"{self.name}: {len(self.others)} ResponseHeaders events")


class RecvFloor:
    """Split by length prefix and parse: the least any subscriber has to do."""

    name = "recv_floor"

    def __init__(self, rec: SubscribeRecording) -> None:
        self.view = memoryview(rec.grpc_payload)
        self.pos = 0

    def block(self, count: int) -> list[Any]:
        view = self.view
        unpack = PREFIX.unpack_from
        parse = api_pb2.Message.FromString
        received: list[Any] = []
        deliver = received.append
        pos = self.pos
        for _ in range(count):
            _flag, size = unpack(view, pos)
            stop = pos + 5 + size
            deliver(parse(view[pos + 5 : stop]))
            pos = stop
        self.pos = pos
        return received

    def check(self) -> None:
        if self.pos != len(self.view):
            raise AssertionError(f"{self.name}: stopped at byte {self.pos} of {len(self.view)}")


def _check_received(name: str, got: list[Any], expected: list[Any], first: int) -> None:
    if len(got) != len(expected):
        raise AssertionError(f"{name}: {len(got)} messages from a read, {len(expected)} expected")
    for i, (message, sent) in enumerate(zip(got, expected)):
        # Offsets are unique and values random: a lost, repeated or mangled
        # message shows. Every 50th gets a full comparison (slow on pure-Python
        # protobuf).
        if (
            message.offset != sent.offset
            or message.value != sent.value
            or ((first + i) % 50 == 0 and message != sent)
        ):
            raise AssertionError(f"{name}: message {first + i} differs")


# -------------------------------------------------------------------- rounds


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.clock = CLOCKS[args.clock]
        self.requests = make_requests(args.messages, args.value_size, seed=1)
        self.request_bodies = [r.SerializeToString() for r in self.requests]
        self.recording = SubscribeRecording(
            make_messages(args.messages, args.value_size, seed=2), args.chunk_size
        )
        per_block = -(-SEND_BLOCK_MIN // args.flush_every)
        self.send_block = per_block * args.flush_every

    def send_round(self) -> dict[str, float]:
        """Seconds spent by our send path and by its floor, in alternating blocks."""
        args = self.args
        runners = [
            SendOurs(self.requests, self.request_bodies, args.flush_every),
            SendFloor(self.requests, self.request_bodies, args.flush_every),
        ]
        spent = dict.fromkeys((r.name for r in runners), 0.0)
        clock = self.clock
        n = len(self.requests)
        gc.collect()
        for i, start in enumerate(range(0, n, self.send_block)):
            stop = min(n, start + self.send_block)
            for runner in runners if i % 2 == 0 else runners[::-1]:
                t0 = clock()
                runner.block(start, stop)
                spent[runner.name] += clock() - t0
        for runner in runners:
            runner.check()
        return spent

    def recv_round(self) -> dict[str, float]:
        """Seconds spent by both receive paths and by their floor, read by read."""
        rec = self.recording
        floor = RecvFloor(rec)
        clients = [RecvOurs(rec, fast_path=True), RecvOurs(rec, fast_path=False)]
        names = [c.name for c in clients] + [floor.name]
        spent = dict.fromkeys(names, 0.0)
        clock = self.clock
        done = 0
        gc.collect()
        for i, chunk in enumerate(rec.chunks):
            count = rec.counts[i]
            shift = i % 3
            got: dict[str, list[Any]] = {}
            for name in names[shift:] + names[:shift]:
                if name == floor.name:
                    t0 = clock()
                    got[name] = floor.block(count)
                    spent[name] += clock() - t0
                else:
                    client = clients[0] if name == "recv" else clients[1]
                    t0 = clock()
                    got[name] = client.block(chunk)
                    spent[name] += clock() - t0
            expected = rec.expected[done : done + count]
            for name, messages in got.items():
                _check_received(name, messages, expected, done)
            done += count
        for client in clients:
            client.check()
        floor.check()
        if done != len(rec.expected):
            raise AssertionError(f"recv: {done} messages received, {len(rec.expected)} sent")
        return spent

    def profile_run(self, variant: str, profiler: Any) -> None:
        """One run of a single variant, with the profiler on around its blocks only."""
        if variant.startswith("send"):
            cls = SendOurs if variant == "send" else SendFloor
            runner = cls(self.requests, self.request_bodies, self.args.flush_every)
            n = len(self.requests)
            for start in range(0, n, self.send_block):
                profiler.enable()
                runner.block(start, min(n, start + self.send_block))
                profiler.disable()
            runner.check()
        elif variant == "recv_floor":
            floor = RecvFloor(self.recording)
            profiler.enable()
            floor.block(len(self.recording.expected))
            profiler.disable()
            floor.check()
        else:
            client = RecvOurs(self.recording, fast_path=variant == "recv")
            for chunk in self.recording.chunks:
                profiler.enable()
                client.block(chunk)
                profiler.disable()
            client.check()


def measure(bench: Bench, log: Callable[[str], None]) -> dict[str, Any]:
    args = bench.args
    n = args.messages
    for w in range(args.warmup):
        bench.send_round()
        bench.recv_round()
        log(f"warm-up {w + 1}/{args.warmup} done")
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(args.rounds):
        # Alternate which workload goes first, too.
        spent = {}
        for run in (bench.send_round, bench.recv_round)[:: 1 if r % 2 == 0 else -1]:
            spent.update(run())
        for variant in VARIANTS:
            rates[variant].append(n / spent[variant])
        log(
            f"round {r + 1}/{args.rounds}: "
            + ", ".join(f"{v} {rates[v][-1] / 1000:.0f}k/s" for v in VARIANTS)
        )

    def ratios(ours: str, floor: str) -> list[float]:
        return [a / b for a, b in zip(rates[ours], rates[floor])]

    ratio = {
        "send": ratios("send", "send_floor"),
        "recv": ratios("recv", "recv_floor"),
        "recv_h2_path": ratios("recv_h2", "recv_floor"),
    }
    med = statistics.median
    return {
        "benchmark": "framing",
        "implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "h2_version": h2.__version__,
        "protobuf_version": google.protobuf.__version__,
        "protobuf_backend": api_implementation.Type(),
        "messages": n,
        "rounds": args.rounds,
        "warmup_rounds": args.warmup,
        "flush_every": args.flush_every,
        "send_block_messages": bench.send_block,
        "chunk_size": args.chunk_size,
        "value_size": args.value_size,
        "clock": args.clock,
        "send_msgs_per_s": med(rates["send"]),
        "send_floor_msgs_per_s": med(rates["send_floor"]),
        "send_ratio": med(ratio["send"]),
        "recv_msgs_per_s": med(rates["recv"]),
        "recv_floor_msgs_per_s": med(rates["recv_floor"]),
        "recv_ratio": med(ratio["recv"]),
        "recv_h2_path_msgs_per_s": med(rates["recv_h2"]),
        "recv_h2_path_ratio": med(ratio["recv_h2_path"]),
        "ratio_ranges": {k: [min(v), max(v)] for k, v in ratio.items()},
        "msgs_per_s_ranges": {k: [min(v), max(v)] for k, v in rates.items()},
    }


def print_table(result: dict[str, Any]) -> None:
    r = result
    print(
        f"{r['implementation']} {r['python_version']}, h2 {r['h2_version']}, "
        f"protobuf {r['protobuf_version']} ({r['protobuf_backend']})"
    )
    print(
        f"{r['messages']} messages ({r['value_size']} B values), median of {r['rounds']} "
        f"rounds after {r['warmup_rounds']} warm-up, {r['clock']} time; flush every "
        f"{r['flush_every']} messages; {r['chunk_size']} B reads"
    )
    print()
    print(f"{'workload':<38}{'msg/s':>11}{'us/msg':>9}{'ratio':>8}   range")
    rows = [
        ("send floor: serialize+prefix+join", "send_floor_msgs_per_s", None),
        ("send: GrpcConnection", "send_msgs_per_s", "send"),
        ("recv floor: split+parse", "recv_floor_msgs_per_s", None),
        ("recv: GrpcConnection, fast path", "recv_msgs_per_s", "recv"),
        ("recv: GrpcConnection, h2 path", "recv_h2_path_msgs_per_s", "recv_h2_path"),
    ]
    for label, rate_key, ratio_key in rows:
        rate = r[rate_key]
        line = f"{label:<38}{rate:>11,.0f}{1e6 / rate:>9.2f}"
        if ratio_key:
            lo, hi = r["ratio_ranges"][ratio_key]
            line += f"{r[ratio_key + '_ratio']:>8.2f}   {lo:.2f}-{hi:.2f}"
        print(line)


def profile(bench: Bench, variant: str, top: int) -> None:
    import cProfile
    import pstats

    for _ in range(bench.args.warmup):
        bench.profile_run(variant, cProfile.Profile())
    profiler = cProfile.Profile()
    bench.profile_run(variant, profiler)
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(top)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    pypy = platform.python_implementation() == "PyPy"
    parser = argparse.ArgumentParser(
        description="Per-message cost of pyliftbridge's gRPC core against a floor."
    )
    parser.add_argument("--messages", type=int, default=20_000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (median reported)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=3 if pypy else 1,
        help="untimed rounds first (default: 3 on PyPy, for the JIT; 1 on CPython)",
    )
    parser.add_argument(
        "--flush-every", type=int, default=64, help="send: data_to_send() every N messages"
    )
    parser.add_argument(
        "--chunk-size", type=int, default=65536, help="recv: bytes per receive_data() call"
    )
    parser.add_argument("--value-size", type=int, default=256, help="message value size in bytes")
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="cpu", help="process CPU time or wall time"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 200 messages, 1 round, no warm-up"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--profile",
        choices=VARIANTS,
        help="instead of measuring, cProfile one run of this variant (after warm-up)",
    )
    parser.add_argument("--profile-top", type=int, default=30, help="rows of the profile")
    args = parser.parse_args(argv)
    if args.quick:
        args.messages, args.rounds, args.warmup = 200, 1, 0
    if min(args.messages, args.rounds, args.flush_every, args.chunk_size) < 1 or args.warmup < 0:
        parser.error("counts and sizes must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    if args.profile:
        profile(bench, args.profile, args.profile_top)
        return 0

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    result = measure(bench, log)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
