"""Readiness probe: a real ``FetchMetadata`` RPC through pyliftbridge's own transport.

A Liftbridge node reports SERVING on the gRPC health service before Raft has a
leader, so health checks say nothing about readiness.  ``FetchMetadata`` is
answered from the node's local copy of the replicated metadata, so once it
lists every broker and the internal streams with a leader on every partition,
that node has joined the cluster and applied the metadata leader's work.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._options import TLSConfig

__all__ = ["BrokerInfo", "ClusterView", "fetch_metadata", "serving"]

_FETCH_METADATA = "/proto.API/FetchMetadata"
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
# grpc.health.v1.HealthCheckRequest{service: "proto.API"} and the SERVING answer,
# encoded by hand: the health protos are not part of the Liftbridge schema.
_HEALTH_REQUEST = b"\x0a\x09proto.API"
_HEALTH_SERVING = b"\x08\x01"


@dataclass(frozen=True)
class BrokerInfo:
    """One broker as listed in metadata."""

    id: str
    host: str
    port: int

    @property
    def address(self) -> str:
        """``host:port`` as advertised to clients."""
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ClusterView:
    """What one node's ``FetchMetadata`` answer says about the cluster.

    Attributes:
        brokers: the brokers it lists.
        leaders: stream name -> partition id -> leader broker id ("" while none).
    """

    brokers: Sequence[BrokerInfo] = ()
    leaders: Mapping[str, Mapping[int, str]] = field(default_factory=dict)

    def not_ready_reason(
        self, addresses: Collection[str], streams: Mapping[str, int]
    ) -> str | None:
        """Why this view does not show a ready cluster, or None when it does.

        Args:
            addresses: every broker address (``host:port``) that must be listed.
            streams: internal stream name -> expected partition count (0 = any)
                that must exist with a leader for every partition.
        """
        listed = {b.address for b in self.brokers}
        missing = sorted(set(addresses) - listed)
        if missing:
            return f"brokers {missing} not listed yet (listed: {sorted(listed)})"
        for name, count in streams.items():
            partitions = self.leaders.get(name)
            if not partitions:
                return f"stream {name} does not exist yet"
            if count and len(partitions) != count:
                return f"stream {name} has {len(partitions)} partitions, expected {count}"
            leaderless = sorted(p for p, leader in partitions.items() if not leader)
            if leaderless:
                return f"stream {name} partitions {leaderless} have no leader yet"
        return None


def fetch_metadata(
    address: str,
    *,
    streams: Sequence[str] = (),
    timeout: float = 10.0,
    tls: TLSConfig | None = None,
) -> ClusterView:
    """Ask the node at ``address`` for cluster metadata with one ``FetchMetadata`` call.

    The call carries no gRPC deadline; ``timeout`` is enforced here.  A node
    gathers the broker list by asking its peers and waits for every one of them
    until the call's deadline, or 3 s when there is none; with a peer down and
    the node's broker cache expired, a call with a deadline therefore always
    runs out of time, while one without gets the live brokers after 3 s.

    Args:
        address: ``host:port`` of the node.
        streams: restrict the answer to these streams (empty = all streams).
        timeout: connect timeout, and how long to wait for the answer, in seconds.
        tls: how to reach a node that serves TLS (None: plaintext).

    Raises:
        pyliftbridge.errors.LiftbridgeError: the call failed or timed out
            (:class:`~pyliftbridge.errors.DeadlineExceededError`).
    """
    # Imported here so that loading the pytest plugin stays cheap.
    from .._pb import api_pb2
    from .._sync.channel import Channel
    from ..errors import DeadlineExceededError, ProtocolError

    request = api_pb2.FetchMetadataRequest(streams=list(streams))
    channel = Channel(address, connect_timeout=timeout, tls=tls)
    with channel, channel.open_call(_FETCH_METADATA) as call:
        call.send(request.SerializeToString(), end=True)
        try:
            raw = call.recv(timeout=timeout)
        except TimeoutError as exc:
            if isinstance(exc, DeadlineExceededError):
                raise
            raise DeadlineExceededError(
                f"FetchMetadata to {address}: no answer within {timeout:g}s"
            ) from None
    if raw is None:
        raise ProtocolError(f"FetchMetadata to {address} ended without a response")
    response = api_pb2.FetchMetadataResponse()
    response.ParseFromString(raw)
    return view_from_response(response)


def serving(address: str, *, timeout: float = 2.0, tls: TLSConfig | None = None) -> bool:
    """True when the node's gRPC server answers a health check with SERVING.

    This is not readiness (see the module docstring).  It is used first, before
    any ``FetchMetadata``, because a node answers ``FetchMetadata`` by asking its
    peers over NATS for their addresses, waits at most 3 s for them, and caches
    whatever it got (for ``metadata.cache.max.age``, 2 minutes by default): asking
    before every peer serves would pin an incomplete broker list.  Peers subscribe
    to those requests before they start serving gRPC.
    """
    from .._sync.channel import Channel

    try:
        with Channel(address, connect_timeout=timeout, tls=tls) as channel:
            answer = channel.unary(_HEALTH_CHECK, _HEALTH_REQUEST, timeout=timeout)
    except ImportError:
        raise
    except Exception:
        return False
    return answer == _HEALTH_SERVING


def view_from_response(response: Any) -> ClusterView:
    """Convert a ``FetchMetadataResponse`` message into a :class:`ClusterView`."""
    brokers = tuple(BrokerInfo(str(b.id), str(b.host), int(b.port)) for b in response.brokers)
    leaders: dict[str, dict[int, str]] = {}
    for stream in response.streamMetadata:
        if stream.error != 0:  # UNKNOWN_STREAM
            continue
        leaders[str(stream.name)] = {
            int(pid): str(part.leader) for pid, part in stream.partitions.items()
        }
    return ClusterView(brokers, leaders)
