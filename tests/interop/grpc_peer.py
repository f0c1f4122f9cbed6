"""A grpcio server with a generic test service, used as an independent gRPC peer.

No generated stubs: every method is registered through
``grpc.method_handlers_generic_handler`` and moves raw bytes (identity
serializers), so the requests and responses are exactly what the tests send
and expect. Requests are small ASCII commands where a method needs
parameters.

Service ``interop.Test``:

``Echo`` (unary)
    returns the request; metadata whose name starts with ``x-echo`` comes back
    as initial metadata and, with ``-t`` inserted before any ``-bin`` suffix,
    as trailing metadata. The trailing metadata also carries
    ``x-time-remaining`` (the deadline the server derived from ``grpc-timeout``,
    in seconds, or ``none``).
``Whoami`` (unary)
    returns ``<server tag> <peer address>``: which server and which client
    connection served the call.
``Stream`` (server streaming)
    request ``"n"``: ``n`` messages, ``stream_item(0..n-1)`` (some empty).
``BigStream`` (server streaming)
    request ``"count:size"``: ``count`` messages of ``size`` bytes each.
``Big`` (unary)
    request ``"size"``: one message of ``size`` bytes.
``Bidi`` (bidirectional)
    echoes every request message as it arrives.
``Fail`` (unary)
    request is a ``grpc.StatusCode`` name: aborts with it and
    :data:`ERROR_MESSAGE`, after setting trailing metadata ``x-detail-bin``.
``FailAfter`` (server streaming)
    two messages, then aborts with NOT_FOUND.
``Slow`` (unary)
    request ``"token:seconds"``: records ``token`` as started, waits that long,
    then returns ``done``; if the call stops being active first, records
    ``token`` as cancelled.
``Hang`` (server streaming)
    request ``"token"``: sends ``first``, then waits until the call is
    cancelled and records ``token``.
``Deflate`` (unary)
    request ``"size"``: a response of ``size`` bytes, deflate-compressed.
``Tracked`` (unary)
    holds the call 30 ms and counts how many run at once.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent import futures
from typing import Any

import grpc

__all__ = [
    "ERROR_MESSAGE",
    "SERVICE",
    "PeerServer",
    "big_payload",
    "method",
    "stream_item",
]

SERVICE = "interop.Test"
#: Status message used by every deliberate failure: non-ASCII and a literal '%'.
ERROR_MESSAGE = "naïve ✓ 100%"
MiB = 1024 * 1024


def method(name: str) -> str:
    """The HTTP/2 path of a method of the test service."""
    return f"/{SERVICE}/{name}"


def stream_item(i: int) -> bytes:
    """Message ``i`` of ``Stream``: every third one is empty, the others vary in size."""
    if i % 3 == 0:
        return b""
    return bytes([i % 251]) * ((i * 7919) % 3000 + 1)


def big_payload(size: int, seed: int = 0) -> bytes:
    """A deterministic, position-dependent payload of ``size`` bytes."""
    block = bytes((seed + j) % 256 for j in range(256))
    return (block * (size // 256 + 1))[:size]


def _identity(data: bytes) -> bytes:
    return data


def _trailing_name(name: str) -> str:
    if name.endswith("-bin"):
        return name[: -len("-bin")] + "-t-bin"
    return name + "-t"


class _Service:
    def __init__(self, tag: str) -> None:
        self.tag = tag
        self._lock = threading.Lock()
        self._cancelled: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self._started: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self.running = 0
        self.max_running = 0

    def cancelled_event(self, token: str) -> threading.Event:
        with self._lock:
            return self._cancelled[token]

    def started_event(self, token: str) -> threading.Event:
        with self._lock:
            return self._started[token]

    # -- handlers

    def echo(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        echoed = [(k, v) for k, v in context.invocation_metadata() if k.startswith("x-echo")]
        context.send_initial_metadata(echoed)
        remaining = context.time_remaining()
        trailing = [(_trailing_name(k), v) for k, v in echoed]
        # grpcio reports "no deadline" as None or as a huge number of seconds.
        no_deadline = remaining is None or remaining > 1e9
        trailing.append(("x-time-remaining", "none" if no_deadline else f"{remaining:.3f}"))
        context.set_trailing_metadata(trailing)
        return request

    def whoami(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        return f"{self.tag} {context.peer()}".encode()

    def stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        for i in range(int(request)):
            yield stream_item(i)

    def big_stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        count, size = (int(x) for x in request.split(b":"))
        for i in range(count):
            yield big_payload(size, seed=i)

    def big(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        return big_payload(int(request))

    def bidi(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        yield from requests

    def fail(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        context.set_trailing_metadata([("x-detail-bin", b"\x00\xffdetail")])
        context.abort(getattr(grpc.StatusCode, request.decode()), ERROR_MESSAGE)
        raise AssertionError("abort returned")

    def fail_after(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield b"one"
        yield b"two"
        context.abort(grpc.StatusCode.NOT_FOUND, ERROR_MESSAGE)

    def slow(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        token, seconds = request.decode().split(":")
        self.started_event(token).set()
        stop = time.monotonic() + float(seconds)
        while time.monotonic() < stop:
            if not context.is_active():
                self.cancelled_event(token).set()
                return b""
            time.sleep(0.01)
        return b"done"

    def hang(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        cancelled = self.cancelled_event(request.decode())
        timed_out = threading.Event()

        def on_termination() -> None:
            if not timed_out.is_set():
                cancelled.set()

        # A callback, not polling after the yield: when the client cancels
        # right after "first", grpcio may never resume this generator.
        context.add_callback(on_termination)
        yield b"first"
        stop = time.monotonic() + 10.0
        while time.monotonic() < stop and context.is_active():
            time.sleep(0.01)
        if context.is_active():
            timed_out.set()

    def deflate(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        context.set_compression(grpc.Compression.Deflate)
        return b"d" * int(request)

    def tracked(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self._lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        time.sleep(0.03)
        with self._lock:
            self.running -= 1
        return request

    def handler(self) -> grpc.GenericRpcHandler:
        def unary(fn: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=_identity, response_serializer=_identity
            )

        def server_streaming(fn: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_stream_rpc_method_handler(
                fn, request_deserializer=_identity, response_serializer=_identity
            )

        def bidi(fn: Any) -> grpc.RpcMethodHandler:
            return grpc.stream_stream_rpc_method_handler(
                fn, request_deserializer=_identity, response_serializer=_identity
            )

        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Echo": unary(self.echo),
                "Whoami": unary(self.whoami),
                "Stream": server_streaming(self.stream),
                "BigStream": server_streaming(self.big_stream),
                "Big": unary(self.big),
                "Bidi": bidi(self.bidi),
                "Fail": unary(self.fail),
                "FailAfter": server_streaming(self.fail_after),
                "Slow": unary(self.slow),
                "Hang": server_streaming(self.hang),
                "Deflate": unary(self.deflate),
                "Tracked": unary(self.tracked),
            },
        )


class PeerServer:
    """A running grpcio server with the test service on 127.0.0.1.

    Args:
        port: 0 for a free port, or a port to (re)bind (grpcio sets SO_REUSEPORT).
        credentials: ``grpc.ssl_server_credentials(...)`` for TLS, None for h2c.
        compression: server-wide response compression.
        options: extra grpcio channel arguments.
        tag: a name returned by ``Whoami``.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        credentials: grpc.ServerCredentials | None = None,
        compression: grpc.Compression | None = None,
        options: Sequence[tuple[str, Any]] = (),
        tag: str = "server",
    ) -> None:
        self.service = _Service(tag)
        self._pool = futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="grpc-peer")
        self.server = grpc.server(
            self._pool,
            handlers=[self.service.handler()],
            options=[
                # Large enough for the > 4 MiB cases where our own limits are raised.
                ("grpc.max_receive_message_length", 8 * MiB),
                ("grpc.max_send_message_length", 8 * MiB),
                *options,
            ],
            compression=compression,
        )
        target = f"127.0.0.1:{port}"
        if credentials is None:
            self.port = self.server.add_insecure_port(target)
        else:
            self.port = self.server.add_secure_port(target, credentials)
        if self.port == 0:
            raise RuntimeError(f"grpcio could not bind {target}")
        self.address = f"127.0.0.1:{self.port}"
        self.server.start()

    def stop(self, grace: float | None = None) -> threading.Event:
        """Stop serving (see ``grpc.Server.stop``); the event is set when it has stopped."""
        return self.server.stop(grace)

    def close(self) -> None:
        """Stop at once and wait."""
        self.server.stop(None).wait(10)
        self._pool.shutdown(wait=False)

    def __enter__(self) -> PeerServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
