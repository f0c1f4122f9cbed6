"""Transport settings shared by the blocking and the asyncio front ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._core.connection import (
    DEFAULT_CONNECTION_WINDOW,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_STREAM_WINDOW,
    USER_AGENT,
)
from ._core.keepalive import GRPC_GO_MIN_PING_INTERVAL
from .errors import InvalidArgumentError

if TYPE_CHECKING:
    import ssl

__all__ = ["ChannelOptions", "TLSConfig"]


@dataclass(frozen=True)
class TLSConfig:
    """How to secure connections to the brokers.

    Server verification is on by default. Give ``ca_file`` (or ``ca_data``:
    PEM as str or bytes, or DER bytes) for a private CA, ``cert_file`` +
    ``key_file`` for mutual TLS, and ``server_hostname`` when the name in the
    broker's certificate differs from the address dialled. ``context``
    replaces all of that with a ready ``ssl.SSLContext`` (ALPN ``h2`` is still
    set on it).
    """

    ca_file: str | None = None
    ca_data: str | bytes | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: str | None = None
    server_hostname: str | None = None
    verify: bool = True
    context: ssl.SSLContext | None = field(default=None, compare=False)

    def build_context(self) -> ssl.SSLContext:
        """Return the SSL context to wrap sockets with (ALPN ``h2``, TLS ≥ 1.2)."""
        # Imported here: ssl costs ~4 MiB, paid only by programs that use TLS.
        import ssl

        if self.context is not None:
            ctx = self.context
        else:
            if self.key_file is not None and self.cert_file is None:
                raise InvalidArgumentError("key_file needs cert_file")
            # Unreadable files, bad PEM and wrong passwords are configuration
            # errors: report them as such, not as a (retryable) broken connection.
            try:
                # ssl reads bytes ``cadata`` as DER only; PEM given as bytes
                # (what most tools hand out) is passed as text.
                cadata = self.ca_data
                if isinstance(cadata, bytes) and b"-----BEGIN" in cadata:
                    cadata = cadata.decode("ascii")
                ctx = ssl.create_default_context(
                    ssl.Purpose.SERVER_AUTH, cafile=self.ca_file, cadata=cadata
                )
                if self.cert_file is not None:
                    ctx.load_cert_chain(self.cert_file, self.key_file, self.key_password)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise InvalidArgumentError(f"invalid TLS configuration: {exc}") from exc
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.options |= ssl.OP_NO_COMPRESSION
            if not self.verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        return ctx


@dataclass(frozen=True)
class ChannelOptions:
    """Knobs of one gRPC channel (one broker address).

    Attributes:
        connect_timeout: seconds allowed for TCP connect plus TLS handshake.
        max_receive_message_size: largest message accepted (default 4 MiB).
        max_send_message_size: largest message sent (default 4 MiB, what
            Liftbridge's gRPC server accepts).
        stream_window: per-stream receive window; bounds how much an idle
            subscriber buffers before the server waits.
        connection_window: connection receive window.
        keepalive_interval: seconds of silence before a PING; None (default)
            disables keepalive. Never below ``keepalive_min_interval``.
        keepalive_timeout: seconds to wait for a PING ack.
        keepalive_min_interval: the server's enforcement (grpc-go: 300 s).
        user_agent: the ``user-agent`` header.
        read_size: bytes read from the socket at once.
    """

    connect_timeout: float = 5.0
    max_receive_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_send_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    stream_window: int = DEFAULT_STREAM_WINDOW
    connection_window: int = DEFAULT_CONNECTION_WINDOW
    keepalive_interval: float | None = None
    keepalive_timeout: float = 20.0
    keepalive_min_interval: float = GRPC_GO_MIN_PING_INTERVAL
    user_agent: str = USER_AGENT
    read_size: int = 65536

    def __post_init__(self) -> None:
        if self.connect_timeout <= 0:
            raise InvalidArgumentError("connect_timeout must be positive")
        if self.max_receive_message_size <= 0 or self.max_send_message_size <= 0:
            raise InvalidArgumentError("message size limits must be positive")
        if self.read_size < 1024:
            raise InvalidArgumentError("read_size must be at least 1024")
