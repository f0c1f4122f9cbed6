"""Both front ends against peers that are not gRPC servers at all.

No grpcio here, so these run on PyPy too: a TLS server that negotiates no
ALPN (or only ``http/1.1``), a TCP server that never answers, one that hangs
up at once, and a port nobody listens on. Also local TLS configuration errors.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any

import pytest
from raw_server import RawServer
from transport_fronts import FRONT_ENDS, run

from pyliftbridge._options import TLSConfig
from pyliftbridge._status import StatusCode
from pyliftbridge.errors import (
    DeadlineExceededError,
    InvalidArgumentError,
    LiftbridgeError,
    UnavailableError,
)

trustme = pytest.importorskip("trustme")

pytestmark = [pytest.mark.interop, pytest.mark.timeout(30)]

PATH = "/interop.Test/Echo"


@pytest.fixture(params=FRONT_ENDS)
def front(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.contextmanager
def raw_server(serve: Any) -> Iterator[RawServer]:
    server = RawServer(serve)
    try:
        yield server
    finally:
        server.close()


def drain(sock: socket.socket, seconds: float = 10.0) -> None:
    """Read (and ignore) everything until EOF or ``seconds`` pass; never write."""
    sock.settimeout(seconds)
    with contextlib.suppress(OSError):
        while sock.recv(65536):
            pass


async def expect_error(ch: Any, cls: type[LiftbridgeError], timeout: float = 5.0) -> Any:
    with pytest.raises(cls) as info:
        await ch.unary(PATH, b"x", timeout=timeout)
    if cls is UnavailableError:
        # Whether the connection broke before or during the call, the error
        # carries the same status (callers dispatch on it).
        assert info.value.code is StatusCode.UNAVAILABLE, repr(info.value)
    return info.value


# ------------------------------------------------------------------------ ALPN


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


def tls_server(ca: Any, alpn: list[str] | None) -> RawServer:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("raw.test").configure_cert(ctx)
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)

    def serve(sock: socket.socket) -> None:
        sock.settimeout(10)
        with ctx.wrap_socket(sock, server_side=True) as tls:
            # The handshake is complete; keep the connection open so that the
            # client's verdict is about ALPN, not about a closed socket.
            drain(tls)

    return RawServer(serve)


@pytest.mark.parametrize("alpn", [None, ["http/1.1"]], ids=["no-alpn", "http1-only"])
def test_tls_server_without_h2_alpn_is_rejected(front: str, ca: Any, alpn: Any) -> None:
    server = tls_server(ca, alpn)
    # PEM as bytes (what trustme and most tools hand out) must be accepted.
    tls = TLSConfig(ca_data=ca.cert_pem.bytes(), server_hostname="raw.test")
    try:
        start = time.monotonic()
        err = run(front, server.address, lambda ch: expect_error(ch, UnavailableError), tls=tls)
        assert time.monotonic() - start < 3.0
    finally:
        server.close()
    assert "ALPN" in str(err), err
    assert "HTTP/2" in str(err), err
    assert server.accepted >= 1
    # The handshake itself succeeded: the refusal is the client's, after it.
    assert not any(isinstance(e, ssl.SSLError) for e in server.errors), server.errors


# ------------------------------------------------------------ non-gRPC servers


def test_deadline_enforced_locally_against_silent_server(front: str) -> None:
    # The peer never sends a byte (not even SETTINGS): only our own timer can end the call.
    with raw_server(drain) as server:

        async def scenario(ch: Any) -> None:
            start = time.monotonic()
            err = await expect_error(ch, DeadlineExceededError, timeout=0.3)
            elapsed = time.monotonic() - start
            assert 0.25 <= elapsed < 1.5, elapsed
            assert err.status.code is StatusCode.DEADLINE_EXCEEDED
            assert isinstance(err, TimeoutError)

            call = await ch.server_stream(PATH, b"x", timeout=0.3)
            with pytest.raises(DeadlineExceededError):
                await call.recv()
            call.close()

        run(front, server.address, scenario)


def test_server_hanging_up_gives_unavailable(front: str) -> None:
    def hang_up(sock: socket.socket) -> None:
        sock.recv(100)

    with raw_server(hang_up) as server:

        async def scenario(ch: Any) -> None:
            for _ in range(2):  # also on the reconnect
                await expect_error(ch, UnavailableError)

        run(front, server.address, scenario)


def test_nobody_listening_gives_unavailable(front: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    err = run(front, f"127.0.0.1:{port}", lambda ch: expect_error(ch, UnavailableError))
    assert str(port) in str(err)


# -------------------------------------------------------- TLS configuration


@pytest.mark.parametrize(
    "tls",
    [
        TLSConfig(ca_data="not a certificate"),
        TLSConfig(ca_data=b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
        TLSConfig(ca_file="/nonexistent/ca.pem"),
        TLSConfig(key_file="/nonexistent/key.pem"),
        TLSConfig(cert_file="/nonexistent/cert.pem"),
    ],
    ids=["garbage-str", "bad-pem-bytes", "missing-ca-file", "key-without-cert", "missing-cert"],
)
def test_bad_tls_configuration_is_invalid_argument(front: str, tls: TLSConfig) -> None:
    # Found before connecting (nothing listens here), and not retryable.
    err = run(front, "127.0.0.1:9", lambda ch: expect_error(ch, InvalidArgumentError), tls=tls)
    assert not err.retryable
