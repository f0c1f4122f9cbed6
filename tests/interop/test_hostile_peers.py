"""Both clients against hostile servers: typed errors, on time, in bounded memory.

A :class:`hostile_peer.HostilePeer` answers real calls of a real client
(``create_stream``, a subscription, a publish) with: a 4 GiB length prefix,
a DATA frame over the negotiated frame size, garbage, bogus trailers, a
message that is not protobuf, a close in the middle of a message, GOAWAY with
the call in flight (promised, and not), an RST_STREAM storm, and a SETTINGS
flood. Each must end in a :class:`~pyliftbridge.LiftbridgeError` (or, where
the client may recover by itself, a success) within the call's deadline plus
10 %, allocate no more than the configured maximum message size (peak memory
of the call, measured with tracemalloc; on PyPy, which has none, with the
process's peak RSS), and leave the client serving other calls.

No grpcio and no Liftbridge server here: these run on PyPy too.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import threading
import time
from typing import Any, Callable

import pytest
from hostile_peer import OK_TRAILERS, HostilePeer, PeerStream, frame, grpc_message

from pyliftbridge import AsyncClient, Client, LiftbridgeError
from pyliftbridge._options import ChannelOptions

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

#: Deadline of the attacked call; it must end within T * (1 + SLACK).
T = 2.0
SLACK = 0.10
#: The client's receive limit: no attack may make it hold more than this.
MAX_MESSAGE = 256 * 1024
DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x7
#: Memory a call may use besides the message limit: client objects, h2 state,
#: read buffers, and h2's events for one read's worth of frames (a read of
#: 64 KiB of SETTINGS frames is ~4 000 events). On PyPy the measure is the
#: process's peak RSS, which moves in GC-sized steps.
SLACK_BYTES = 3 * 1024 * 1024 if sys.implementation.name == "cpython" else 64 * 1024 * 1024


# --------------------------------------------------------------------- attacks


def huge_length_prefix(s: PeerStream) -> None:
    s.headers()
    s.data(b"\x00\xff\xff\xff\xff" + bytes(1000))


def frame_over_negotiated_size(s: PeerStream) -> None:
    # The header announces a 16 MiB frame (the client allows 16 KiB); 4 MiB follow.
    s.headers()
    s.raw(frame(DATA, 0, s.stream_id, length=2**24 - 1))
    chunk = bytes(65536)
    for _ in range(64):
        s.sock.sendall(chunk)
    s.close_after = True


def message_over_maximum_in_legal_frames(s: PeerStream) -> None:
    # Legal 16 KiB frames carrying one message a byte over the client's maximum.
    s.headers()
    s.data(b"\x00" + (MAX_MESSAGE + 1).to_bytes(4, "big"))
    chunk = bytes(16384)
    for _ in range(MAX_MESSAGE // len(chunk) + 1):
        s.data(chunk)


def garbage(s: PeerStream) -> None:
    s.raw(
        random.Random(7).randbytes(8192)
        if hasattr(random.Random, "randbytes")
        else os.urandom(8192)
    )
    s.close_after = True


def trailers(headers: list[tuple[str, str]]) -> Callable[[PeerStream], None]:
    def attack(s: PeerStream) -> None:
        s.headers()
        s.conn.send_headers(s.stream_id, headers, end_stream=True)

    return attack


def not_protobuf(s: PeerStream) -> None:
    s.headers()
    s.data(grpc_message(b"\xff" * 64))
    s.conn.send_headers(s.stream_id, OK_TRAILERS, end_stream=True)


def close_mid_message(s: PeerStream) -> None:
    s.headers()
    s.data(b"\x00\x00\x00\x01\x00" + b"abc")
    s.close_after = True


def goaway_promised(s: PeerStream) -> None:
    # GOAWAY that promises to finish the call, then the connection drops.
    s.conn.close_connection(error_code=0, last_stream_id=s.stream_id)
    s.close_after = True


def goaway_not_processed(s: PeerStream) -> None:
    # GOAWAY below the call: the server never saw it, the client may send it again.
    s.conn.close_connection(error_code=0, last_stream_id=0)
    s.close_after = True


def rst_stream_storm(s: PeerStream) -> None:
    s.headers()
    code = (11).to_bytes(4, "big")  # ENHANCE_YOUR_CALM
    s.raw(b"".join(frame(RST_STREAM, 0, s.stream_id, code) for _ in range(5000)))


def settings_flood(s: PeerStream) -> None:
    # Thousands of SETTINGS (each must be acked), then a proper answer.
    flood = b"".join(
        frame(SETTINGS, 0, 0, b"\x00\x04" + (65535 + i).to_bytes(4, "big")) for i in range(5000)
    )
    s.raw(flood)
    s.headers()
    if s.path == "Subscribe":
        return
    s.data(grpc_message(b""), end=False)
    s.conn.send_headers(s.stream_id, OK_TRAILERS, end_stream=True)


ATTACKS: dict[str, Callable[[PeerStream], None]] = {
    "4GiB-length-prefix": huge_length_prefix,
    "frame-over-negotiated-size": frame_over_negotiated_size,
    "message-over-maximum": message_over_maximum_in_legal_frames,
    "garbage": garbage,
    "trailers-bad-status": trailers([("grpc-status", "abc"), ("grpc-message", "%zz%E9")]),
    "trailers-no-status": trailers([("grpc-message", "no status")]),
    "trailers-status-99": trailers([("grpc-status", "99")]),
    "trailers-huge-message": trailers([("grpc-status", "2"), ("grpc-message", "x" * 60000)]),
    "not-protobuf": not_protobuf,
    "close-mid-message": close_mid_message,
    "goaway-promised": goaway_promised,
    "goaway-not-processed": goaway_not_processed,
    "rst-stream-storm": rst_stream_storm,
    "settings-flood": settings_flood,
}

#: Attacks after which the call may go on: a peer that answered after its
#: flood (a subscription then simply has no message to give).
MAY_SUCCEED = {"settings-flood"}


# ------------------------------------------------------------------ measuring


class PeakMemory:
    """Peak memory allocated while the block runs (bytes), or None if unmeasurable."""

    def __init__(self) -> None:
        self.peak: int | None = None
        self._tracemalloc: Any = None
        self._base = 0

    def __enter__(self) -> PeakMemory:
        try:
            import tracemalloc

            tracemalloc.start()
            self._tracemalloc = tracemalloc
            self._base = tracemalloc.get_traced_memory()[0]
        except (ImportError, AttributeError, RuntimeError):
            # PyPy: no tracemalloc. Reset the kernel's peak-RSS mark instead.
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
                self._base = _proc_status("VmRSS")
            except OSError:
                self._base = -1
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tracemalloc is not None:
            self.peak = self._tracemalloc.get_traced_memory()[1] - self._base
            self._tracemalloc.stop()
        elif self._base >= 0:
            self.peak = _proc_status("VmHWM") - self._base


def _proc_status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


# ----------------------------------------------------------------- the victims


class BlockingAsAsync:
    """A blocking Client with coroutine methods, so one scenario serves both."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return call


async def next_message(subscription: Any, timeout: float) -> Any:
    """The subscription's next message, or its error; waits at most ``timeout``."""
    if hasattr(subscription, "__anext__"):
        return await asyncio.wait_for(subscription.__anext__(), timeout)
    box: list[Any] = []

    def read() -> None:
        try:
            box.append(next(subscription))
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(timeout)
    if not box:
        raise asyncio.TimeoutError
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


async def create_stream(client: Any) -> None:
    await client.create_stream("s.subj", "s", timeout=T)


async def subscription(client: Any) -> None:
    # One deadline for subscribing and reading the first message.
    deadline = time.monotonic() + T
    sub = await client.subscribe("s", start_at="earliest", timeout=T)
    try:
        message = await next_message(sub, deadline - time.monotonic())
    finally:
        closing = sub.close()  # a coroutine for the asyncio client
        if closing is not None:
            await closing
    raise AssertionError(f"a hostile peer produced a message: {message!r}")


async def publish(client: Any) -> None:
    await client.publish("s", b"value", timeout=T)


VICTIMS = {"CreateStream": create_stream, "Subscribe": subscription, "PublishAsync": publish}


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize("method", sorted(VICTIMS))
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_hostile_answer(attack: str, method: str, flavour: str) -> None:
    options = ChannelOptions(max_receive_message_size=MAX_MESSAGE)
    with HostilePeer(ATTACKS[attack], {method}) as peer:

        async def scenario() -> None:
            # No resubscribing: a broken subscription must report, not wait 30 s.
            kwargs: dict[str, Any] = {"options": options, "resubscribe_wait": 0}
            if flavour == "async":
                client: Any = AsyncClient(peer.address, **kwargs)
            else:
                client = BlockingAsAsync(Client(peer.address, **kwargs))
            try:
                await client.fetch_metadata(timeout=5)  # connected and routed before the attack
                outcome: BaseException | None = None
                with PeakMemory() as memory:
                    start = time.monotonic()
                    try:
                        await VICTIMS[method](client)
                    except Exception as exc:
                        outcome = exc
                    elapsed = time.monotonic() - start
                assert peer.attacks >= 1, "the peer never attacked (the call went elsewhere)"
                assert elapsed <= T * (1 + SLACK), f"{attack}: took {elapsed:.2f}s"
                if outcome is None or isinstance(outcome, asyncio.TimeoutError):
                    # Only by the client's own recovery: a retry (admin calls
                    # are retried on UNAVAILABLE, a call below a GOAWAY is
                    # sent again) that the peer answered properly.
                    retried = peer.answered.get(method, 0) > 0
                    assert retried or attack in MAY_SUCCEED, f"{attack}: {outcome!r}"
                else:
                    assert isinstance(outcome, LiftbridgeError), f"{attack}: {outcome!r}"
                if memory.peak is not None:
                    assert memory.peak < MAX_MESSAGE + SLACK_BYTES, (
                        f"{attack}: peak {memory.peak} bytes"
                    )
                peak = "n/a" if memory.peak is None else f"{memory.peak / 1024:.0f} KiB"
                print(
                    f"\n{attack:28} {method:13} {flavour:5} {elapsed:5.2f}s {peak:>9}  {outcome!r:.90}"
                )
                # The client still serves other calls (on a new connection if need be).
                await client.fetch_metadata(timeout=5)
                await client.create_stream("t.subj", "t", timeout=5)
            finally:
                await client.close()

        asyncio.run(scenario())
