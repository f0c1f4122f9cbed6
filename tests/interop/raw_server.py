"""A threaded TCP listener on 127.0.0.1 for the hand-made peers of the interop tests."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Callable


class RawServer:
    """Accepts connections; each one is handled by ``serve(sock)`` on a thread of its own.

    Args:
        serve: handles one accepted socket; the socket is closed when it returns.
        receive_buffer: SO_RCVBUF for accepted sockets (they inherit it from
            the listener), to make a client's writes back up sooner.
        errors_after_close: also record the OSErrors of handlers that end
            after :meth:`close` (by default those are the shutdown's doing).
    """

    def __init__(
        self,
        serve: Callable[[socket.socket], None],
        *,
        receive_buffer: int | None = None,
        errors_after_close: bool = True,
    ) -> None:
        self._serve = serve
        self._errors_after_close = errors_after_close
        self._listener = socket.create_server(("127.0.0.1", 0))
        if receive_buffer is not None:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.port = self._listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.accepted = 0
        #: OSErrors (ssl.SSLError included) raised by ``serve``.
        self.errors: list[BaseException] = []
        self._conns: list[socket.socket] = []
        self._closed = threading.Event()
        # Closing a socket does not wake a thread blocked in accept(): poll.
        self._listener.settimeout(0.05)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._closed.is_set()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.settimeout(None)
            self.accepted += 1
            self._conns.append(sock)
            threading.Thread(target=self._handle, args=(sock,), daemon=True).start()

    def _handle(self, sock: socket.socket) -> None:
        try:
            self._serve(sock)
        except OSError as exc:
            if self._errors_after_close or not self._closed.is_set():
                self.errors.append(exc)
        finally:
            sock.close()

    def close(self, also: list[socket.socket] | None = None) -> None:
        """Stop accepting and shut down every accepted socket (and those in ``also``)."""
        self._closed.set()
        self._thread.join(5)
        self._listener.close()
        for sock in [*self._conns, *(also or [])]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
