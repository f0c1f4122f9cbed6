"""Socket reads and writes shared by a connection's reader and writer threads.

A plain TCP socket may be read by one thread while another writes to it. A
TLS socket may not: OpenSSL forbids using one SSL object from two threads at
once, and CPython releases the GIL inside ``SSL_read``/``SSL_write``, so a
reader blocked in ``recv`` while a writer runs ``sendall`` corrupts records
now and then (the peer sees "bad record MAC" / "decryption failed"). For TLS
the socket is therefore non-blocking and every SSL call is made under one
lock; threads wait for readiness with the lock released, so neither side
ever waits for the other.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import sys
import threading
from typing import Callable

__all__ = ["SocketIO"]

# How often a thread waiting on the socket with no time limit re-checks that
# the socket is still open (a selector never wakes for a closed descriptor)
# and, for a writer, that the connection lives.
_POLL = 0.5


class SocketIO:
    """``recv``/``sendall``/``close`` on one connected socket, safe across threads.

    One thread reads (:meth:`wait_readable`, :meth:`recv`); writes are
    serialised by the caller (one writer at a time); :meth:`close` may come
    from any thread.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        # ssl is imported only by programs that use TLS (it costs ~4 MiB).
        ssl = sys.modules.get("ssl")
        self._tls = ssl is not None and isinstance(sock, ssl.SSLSocket)
        #: What a non-blocking TLS read or write raises when it must wait.
        self._would_block: tuple[type[BaseException], ...] = (BlockingIOError,)
        if ssl is not None:
            self._would_block = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError)
        self._ssl_lock = threading.Lock()
        self._read_selector = selectors.DefaultSelector()
        self._read_selector.register(sock, selectors.EVENT_READ)
        if self._tls:
            sock.setblocking(False)

    @property
    def needs_wait(self) -> bool:
        """True when :meth:`recv` must follow :meth:`wait_readable` (TLS)."""
        return self._tls

    def wait_readable(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds (None: no limit) for :meth:`recv` to have news."""
        # TLS may hold decrypted bytes that no longer show on the socket.
        if self._tls and self.sock.pending():  # type: ignore[attr-defined]
            return True
        while True:
            try:
                ready = self._read_selector.select(_POLL if timeout is None else timeout)
            except (ValueError, KeyError) as exc:  # the socket was closed meanwhile
                raise OSError(f"socket closed: {exc}") from exc
            if ready or timeout is not None:
                return bool(ready)
            if self.sock.fileno() < 0:
                raise OSError("socket closed")

    def recv(self, size: int) -> bytes | None:
        """Bytes read; ``b""`` at end of stream; None when TLS has no whole record yet.

        On a plain socket this blocks until data arrives; on a TLS socket
        call it after :meth:`wait_readable`.
        """
        if not self._tls:
            return self.sock.recv(size)
        with self._ssl_lock:
            try:
                return self.sock.recv(size)
            except self._would_block:
                return None

    def sendall(self, data: bytes, alive: Callable[[], bool]) -> None:
        """Write all of ``data``; ``alive()`` False ends a wait for room with OSError."""
        if not self._tls:
            self.sock.sendall(data)
            return
        view = memoryview(data)
        while view:
            with self._ssl_lock:
                try:
                    # Without partial writes (CPython does not enable them)
                    # SSL_write takes all or nothing; after a "want" error it
                    # must be retried with the same bytes, which this does.
                    sent = self.sock.send(view)
                except self._would_block:
                    sent = 0
            if sent:
                view = view[sent:]
                continue
            if not alive():
                raise OSError("connection closed while waiting to write")
            self._wait_writable()

    def _wait_writable(self) -> None:
        # A selector of its own each time: this is the rare full-buffer case,
        # and a long-lived one could not be closed safely from the reader.
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self.sock, selectors.EVENT_WRITE)
                selector.select(_POLL)
        except (ValueError, KeyError) as exc:  # the socket was closed meanwhile
            raise OSError(f"socket closed: {exc}") from exc

    def shutdown(self) -> None:
        """End the connection both ways, from any thread; wakes a waiting reader.

        The descriptor stays open until :meth:`close`: closed under a reader
        that is about to wait on it, it would never wake that reader.
        """
        with self._ssl_lock, contextlib.suppress(OSError):
            # socket.socket's own shutdown: SSLSocket's drops its SSL object,
            # and a thread still in recv or send would then move raw bytes.
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)

    def close(self) -> None:
        """Release the socket and the reader's selector (once no thread waits on them)."""
        with self._ssl_lock:
            self.sock.close()
        self._read_selector.close()
