"""Events the core hands to its driver.

Every call started on a :class:`~.connection.GrpcConnection` produces, in
order: at most one :class:`ResponseHeaders`, any number of
:class:`MessageReceived`, and exactly one :class:`CallEnded`.
"""

from __future__ import annotations

from .._status import Metadata, Status
from ..errors import LiftbridgeError

__all__ = [
    "CallEnded",
    "ConnectionTerminated",
    "Event",
    "MessageReceived",
    "PingAcknowledged",
    "ResponseHeaders",
]


class Event:
    """Base class of core events."""

    __slots__ = ()


class ResponseHeaders(Event):
    """The server's response headers arrived (initial metadata).

    Not produced for a Trailers-Only response (its metadata is all trailing,
    in the :class:`CallEnded` status) nor for a non-200 HTTP response.
    """

    __slots__ = ("call_id", "metadata")

    def __init__(self, call_id: int, metadata: Metadata) -> None:
        self.call_id = call_id
        self.metadata = metadata

    def __repr__(self) -> str:
        return f"ResponseHeaders(call_id={self.call_id}, metadata={self.metadata!r})"


class MessageReceived(Event):
    """One complete gRPC message arrived.

    ``flow_controlled_length`` is the HTTP/2 flow-control credit tied to this
    message (the DATA frames it arrived in that were not acknowledged already;
    0 when a later message completed by the same DATA frame carries it):
    pass it to :meth:`GrpcConnection.acknowledge` when the application has
    consumed the message, so a slow consumer slows the sender.
    """

    __slots__ = ("call_id", "data", "flow_controlled_length")

    def __init__(self, call_id: int, data: bytes, flow_controlled_length: int) -> None:
        self.call_id = call_id
        self.data = data
        self.flow_controlled_length = flow_controlled_length

    def __repr__(self) -> str:
        return (
            f"MessageReceived(call_id={self.call_id}, data=<{len(self.data)} bytes>, "
            f"flow_controlled_length={self.flow_controlled_length})"
        )


class CallEnded(Event):
    """The call is over, successfully or not.

    ``transparent_retry`` is True when the server provably never processed the
    request (REFUSED_STREAM, a GOAWAY below this stream, or never sent at all),
    so it is safe to send again on another connection. ``error`` is the
    client's own error when it ended the call because of what the server sent
    (a message over the size limit, bytes that are not gRPC messages): the
    status alone would read like the server's word.
    """

    __slots__ = ("call_id", "error", "status", "transparent_retry")

    def __init__(
        self,
        call_id: int,
        status: Status,
        transparent_retry: bool = False,
        error: LiftbridgeError | None = None,
    ) -> None:
        self.call_id = call_id
        self.status = status
        self.transparent_retry = transparent_retry
        self.error = error

    def __repr__(self) -> str:
        return f"CallEnded(call_id={self.call_id}, status={self.status!r})"


class ConnectionTerminated(Event):
    """The server sent GOAWAY: no new calls may start on this connection.

    Calls at or below ``last_stream_id`` keep running to completion.
    """

    __slots__ = ("additional_data", "error_code", "last_stream_id")

    def __init__(self, error_code: int, last_stream_id: int, additional_data: bytes) -> None:
        self.error_code = error_code
        self.last_stream_id = last_stream_id
        self.additional_data = additional_data

    @property
    def too_many_pings(self) -> bool:
        """True when the server complained that we ping too often."""
        return self.error_code == 11 and b"too_many_pings" in self.additional_data

    def __repr__(self) -> str:
        return (
            f"ConnectionTerminated(error_code={self.error_code}, "
            f"last_stream_id={self.last_stream_id}, additional_data={self.additional_data!r})"
        )


class PingAcknowledged(Event):
    """The server answered one of our PINGs."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data
