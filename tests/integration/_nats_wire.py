"""A minimal blocking NATS client for tests: CONNECT, SUB, PUB, and reading MSG.

Only what the envelope tests need, so they need no NATS library. It follows
the NATS client protocol (text commands, ``\\r\\n`` line ends, a payload after
PUB and MSG lines); every read has a deadline.
"""

from __future__ import annotations

import json
import socket
import time
from collections import deque
from urllib.parse import urlsplit


class NatsWire:
    """One NATS connection; ``timeout`` bounds every wait on the server."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        self._timeout = timeout
        self._sock = socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 4222), timeout=timeout
        )
        self._buffer = b""
        self._sids = 0
        # Messages that arrived while waiting for a PONG, oldest first.
        self._pending: deque[tuple[str, bytes]] = deque()
        info = self._line()
        if not info.startswith(b"INFO "):
            raise AssertionError(f"expected INFO from NATS, got {info!r}")
        options = {"verbose": False, "pedantic": False, "name": "pyliftbridge-tests"}
        self._send(b"CONNECT " + json.dumps(options).encode() + b"\r\n")
        self.flush()

    def close(self) -> None:
        """Close the connection."""
        self._sock.close()

    def __enter__(self) -> NatsWire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, data: bytes) -> None:
        self._sock.sendall(data)

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("NATS server did not answer in time")
        self._sock.settimeout(remaining)
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("NATS server closed the connection")
        self._buffer += chunk

    def _line(self, deadline: float | None = None) -> bytes:
        deadline = time.monotonic() + self._timeout if deadline is None else deadline
        while b"\r\n" not in self._buffer:
            self._fill(deadline)
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line

    def _exact(self, size: int, deadline: float) -> bytes:
        while len(self._buffer) < size + 2:
            self._fill(deadline)
        data, self._buffer = self._buffer[:size], self._buffer[size + 2 :]
        return data

    def flush(self) -> None:
        """Round trip a PING: the server has processed everything sent before."""
        self._send(b"PING\r\n")
        deadline = time.monotonic() + self._timeout
        while True:
            line = self._line(deadline)
            if line == b"PONG":
                return
            if line.startswith(b"-ERR"):
                raise AssertionError(f"NATS error: {line.decode(errors='replace')}")
            if line.startswith(b"MSG "):
                self._pending.append(self._message(line, deadline))
            # Anything else (+OK, INFO updates) is not for us.

    def subscribe(self, subject: str) -> None:
        """Subscribe to ``subject`` (its messages are read with :meth:`next_message`)."""
        self._sids += 1
        self._send(f"SUB {subject} {self._sids}\r\n".encode())
        self.flush()

    def publish(self, subject: str, payload: bytes) -> None:
        """Publish ``payload`` on ``subject`` and wait until the server has it."""
        self._send(f"PUB {subject} {len(payload)}\r\n".encode() + payload + b"\r\n")
        self.flush()

    def next_message(self) -> tuple[str, bytes]:
        """(subject, payload) of the next message delivered to a subscription."""
        if self._pending:
            return self._pending.popleft()
        deadline = time.monotonic() + self._timeout
        while True:
            line = self._line(deadline)
            if line == b"PING":
                self._send(b"PONG\r\n")
            elif line.startswith(b"MSG "):
                return self._message(line, deadline)

    def _message(self, line: bytes, deadline: float) -> tuple[str, bytes]:
        # MSG <subject> <sid> [reply-to] <#bytes>, then the payload.
        fields = line.split()
        return fields[1].decode(), self._exact(int(fields[-1]), deadline)
