"""A Liftbridge look-alike that answers some real calls with hostile bytes.

:class:`HostilePeer` is a server-side ``h2`` connection on a
:class:`raw_server.RawServer`. It answers ``FetchMetadata`` (naming itself as
the only broker) and ``CreateStream`` properly, so that a real
:class:`pyliftbridge.Client` or :class:`pyliftbridge.AsyncClient` can use it,
and hands the calls it is told to attack to an *attack*: a function that
writes whatever it likes (through h2, or raw bytes past it) to the socket.
Only the first ``attacks_allowed`` calls on the attacked paths are attacked;
later ones are answered properly, so a test can also check that the client
recovers. The peer never allocates
much itself (raw floods are written from one small buffer), so that memory
measured in the test process is the client's.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Callable

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from raw_server import RawServer

from pyliftbridge._pb import api_pb2

__all__ = ["Attack", "HostilePeer", "PeerStream", "grpc_message"]

GRPC_HEADERS = [(":status", "200"), ("content-type", "application/grpc")]
OK_TRAILERS = [("grpc-status", "0")]


def grpc_message(payload: bytes) -> bytes:
    """``payload`` framed as one uncompressed gRPC message."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def frame(
    kind: int, flags: int, stream_id: int, payload: bytes = b"", length: int | None = None
) -> bytes:
    """A raw HTTP/2 frame (``length`` may lie about the payload)."""
    size = len(payload) if length is None else length
    return size.to_bytes(3, "big") + bytes([kind, flags]) + stream_id.to_bytes(4, "big") + payload


class PeerStream:
    """What an attack gets: the call's stream and the connection to write on."""

    def __init__(
        self,
        peer: HostilePeer,
        sock: socket.socket,
        conn: h2.connection.H2Connection,
        stream_id: int,
        path: str,
    ) -> None:
        self.peer = peer
        self.sock = sock
        self.conn = conn
        self.stream_id = stream_id
        self.path = path
        #: Set by an attack that wants the connection closed once it returns.
        self.close_after = False
        #: True once response headers went out (a Subscribe's, with its handshake).
        self.headers_sent = False

    def flush(self) -> None:
        """Write what h2 has queued."""
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def raw(self, data: bytes) -> None:
        """Write bytes past h2 (after flushing what it has queued)."""
        self.flush()
        self.sock.sendall(data)

    def headers(self, headers: list[tuple[str, str]] | None = None, *, end: bool = False) -> None:
        """Send response headers, unless they went out already."""
        if self.headers_sent and not end:
            return
        self.conn.send_headers(self.stream_id, headers or GRPC_HEADERS, end_stream=end)
        self.headers_sent = True
        self.flush()

    def data(self, payload: bytes, *, end: bool = False) -> None:
        self.conn.send_data(self.stream_id, payload, end_stream=end)
        self.flush()


#: An attack: called with the stream of a call the peer was told to attack.
Attack = Callable[[PeerStream], None]


class HostilePeer:
    """See the module docstring.

    Args:
        attack: what to do with an attacked call.
        paths: method names attacked (``"CreateStream"``, ``"Subscribe"``,
            ``"PublishAsync"``...). A Subscribe is attacked after its
            handshake (the empty message), a PublishAsync on its first request.
        attacks_allowed: calls attacked (the first ones to come).
    """

    def __init__(self, attack: Attack, paths: set[str], *, attacks_allowed: int = 1) -> None:
        self.attack = attack
        self.paths = paths
        self.attacks_allowed = attacks_allowed
        self.connections = 0
        self.attacks = 0
        #: Calls answered properly, per method name.
        self.answered: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server = RawServer(self._serve, errors_after_close=False)
        self.port = self._server.port
        self.address = self._server.address

    def close(self) -> None:
        self._server.close()

    def __enter__(self) -> HostilePeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _metadata(self) -> bytes:
        broker = api_pb2.Broker(id="hostile", host="127.0.0.1", port=self.port)
        # Stream "s": one partition, led by the peer itself.
        partition = api_pb2.PartitionMetadata(
            id=0, leader="hostile", replicas=["hostile"], isr=["hostile"]
        )
        stream = api_pb2.StreamMetadata(name="s", subject="s.subj", partitions={0: partition})
        response = api_pb2.FetchMetadataResponse(brokers=[broker], streamMetadata=[stream])
        return response.SerializeToString()

    def _serve(self, sock: socket.socket) -> None:
        with self._lock:
            self.connections += 1
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        conn = h2.connection.H2Connection(config=config)
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        paths: dict[int, str] = {}
        sock.settimeout(30)
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                return
            for event in events:
                if isinstance(event, h2.events.RequestReceived):
                    paths[event.stream_id] = dict(event.headers)[":path"].rsplit("/", 1)[-1]
                    continue
                if isinstance(event, h2.events.DataReceived):
                    with contextlib.suppress(h2.exceptions.ProtocolError):
                        conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                    path = paths.get(event.stream_id)
                    if path == "PublishAsync" and self._hostile(path):
                        paths.pop(event.stream_id)
                        if self._attack(PeerStream(self, sock, conn, event.stream_id, path)):
                            return
                    continue
                if not isinstance(event, h2.events.StreamEnded):
                    continue
                path = paths.pop(event.stream_id, None)
                if path is None:
                    continue
                stream = PeerStream(self, sock, conn, event.stream_id, path)
                if path == "Subscribe":
                    stream.headers()
                    stream.data(grpc_message(b""))  # the handshake
                if self._hostile(path):
                    if self._attack(stream):
                        return
                    continue
                with self._lock:
                    self.answered[path] = self.answered.get(path, 0) + 1
                if path == "FetchMetadata":
                    stream.headers()
                    stream.data(grpc_message(self._metadata()))
                    conn.send_headers(event.stream_id, OK_TRAILERS, end_stream=True)
                elif path == "CreateStream":
                    stream.headers()
                    stream.data(grpc_message(b""))
                    conn.send_headers(event.stream_id, OK_TRAILERS, end_stream=True)
                elif path != "Subscribe":
                    conn.send_headers(
                        event.stream_id,
                        [(":status", "200"), ("grpc-status", "12")],
                        end_stream=True,
                    )
            with contextlib.suppress(OSError):
                sock.sendall(conn.data_to_send())

    def _hostile(self, path: str) -> bool:
        with self._lock:
            return path in self.paths and self.attacks < self.attacks_allowed

    def _attack(self, stream: PeerStream) -> bool:
        """Run the attack; True when the connection is to be closed."""
        with self._lock:
            self.attacks += 1
        try:
            self.attack(stream)
            stream.flush()
        except (OSError, h2.exceptions.ProtocolError):
            return True
        return stream.close_after
