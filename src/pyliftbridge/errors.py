"""The one error tree of pyliftbridge.

Every exception raised by the library derives from :class:`LiftbridgeError`.
Errors that come from a gRPC status carry it in :attr:`LiftbridgeError.status`.

::

    LiftbridgeError
    ├── InvalidArgumentError (also ValueError)  bad input, found locally or by the server
    ├── ProtocolError                           malformed bytes from the peer, transport misuse
    │   └── MessageSizeError                    a gRPC message over the configured maximum
    ├── RpcError                                any other gRPC status without a finer class
    ├── UnavailableError                        connection lost / broker unreachable (retryable)
    ├── DeadlineExceededError (also TimeoutError)
    ├── AckTimeoutError (also TimeoutError)     no ack within the ack timeout
    ├── CancelledError                          the call was cancelled
    ├── ClientClosedError                       the client was closed under the operation
    ├── StreamExistsError
    ├── NoSuchStreamError
    ├── NoSuchPartitionError
    ├── StreamDeletedError
    ├── PartitionPausedError
    ├── ReadonlyPartitionError
    ├── EndOfReadonlyPartitionError → ReadonlyPartitionError (ends a subscription normally)
    ├── StopPositionReachedError                 (ends a subscription normally)
    ├── IncorrectOffsetError
    ├── MessageTooLargeError
    ├── EncryptionError
    ├── PermissionDeniedError
    ├── NotLeaderError                           request reached a broker that does not lead
    ├── NoKnownLeaderError                       the cluster has no metadata leader yet
    └── ConsumerGroupError
"""

from __future__ import annotations

from typing import ClassVar

from ._status import Metadata, Status, StatusCode

__all__ = [
    "AckTimeoutError",
    "CancelledError",
    "ClientClosedError",
    "ConsumerGroupError",
    "DeadlineExceededError",
    "EncryptionError",
    "EndOfReadonlyPartitionError",
    "EnvelopeError",
    "IncorrectOffsetError",
    "InvalidArgumentError",
    "LiftbridgeError",
    "MessageSizeError",
    "MessageTooLargeError",
    "NoKnownLeaderError",
    "NoSuchPartitionError",
    "NoSuchStreamError",
    "NotLeaderError",
    "PartitionPausedError",
    "PermissionDeniedError",
    "ProtocolError",
    "ReadonlyPartitionError",
    "RpcError",
    "StopPositionReachedError",
    "StreamDeletedError",
    "StreamExistsError",
    "UnavailableError",
    "error_from_status",
]


class LiftbridgeError(Exception):
    """Root of every error raised by pyliftbridge.

    Args:
        message: what went wrong, for people.
        status: the gRPC status behind the error, where there is one.
    """

    #: True when retrying the same request on a fresh connection may succeed.
    retryable: ClassVar[bool] = False

    def __init__(self, message: str = "", *, status: Status | None = None) -> None:
        if not message and status is not None:
            message = str(status)
        super().__init__(message)
        self.message = message
        self.status = status

    @property
    def code(self) -> StatusCode | None:
        """The gRPC status code, or None when the error did not come from a status."""
        return None if self.status is None else self.status.code

    @property
    def details(self) -> str:
        """The gRPC status message (empty when there is no status)."""
        return "" if self.status is None else self.status.message

    @property
    def trailing_metadata(self) -> Metadata:
        """Trailing metadata of the failed call (empty when there is none)."""
        return () if self.status is None else self.status.trailing_metadata


class InvalidArgumentError(LiftbridgeError, ValueError):
    """An argument was rejected, locally or by the server (INVALID_ARGUMENT)."""


class ProtocolError(LiftbridgeError):
    """The peer sent something malformed, or the transport was used wrongly."""


class EnvelopeError(ProtocolError):
    """Bytes are not a well-formed Liftbridge NATS envelope of the expected type."""


class MessageSizeError(ProtocolError):
    """A gRPC message is larger than the configured send or receive maximum."""


class RpcError(LiftbridgeError):
    """A call failed with a gRPC status that has no finer class here."""


class UnavailableError(LiftbridgeError):
    """The broker could not be reached or the connection broke (UNAVAILABLE)."""

    retryable = True


class DeadlineExceededError(LiftbridgeError, TimeoutError):
    """The call's deadline passed before it finished (DEADLINE_EXCEEDED)."""


class AckTimeoutError(LiftbridgeError, TimeoutError):
    """A publish was sent but no ack arrived within the ack timeout; its fate is unknown."""


class CancelledError(LiftbridgeError):
    """The call was cancelled (CANCELLED)."""


class ClientClosedError(LiftbridgeError):
    """The client was closed before the operation could finish."""


class StreamExistsError(LiftbridgeError):
    """A stream with that name already exists."""


class NoSuchStreamError(LiftbridgeError):
    """The stream does not exist."""


class NoSuchPartitionError(LiftbridgeError):
    """The stream or partition does not exist."""


class StreamDeletedError(LiftbridgeError):
    """The stream was deleted while it was being read."""


class PartitionPausedError(LiftbridgeError):
    """The partition was paused while it was being read."""


class ReadonlyPartitionError(LiftbridgeError):
    """The partition is readonly: it accepts no more messages."""


class EndOfReadonlyPartitionError(ReadonlyPartitionError):
    """A subscription reached the end of a readonly partition."""


class StopPositionReachedError(LiftbridgeError):
    """A subscription reached its stop position."""


class IncorrectOffsetError(LiftbridgeError):
    """Optimistic concurrency control refused the publish: the expected offset was wrong."""


class MessageTooLargeError(LiftbridgeError):
    """The message is larger than the server accepts."""


class EncryptionError(LiftbridgeError):
    """The server failed to encrypt or decrypt the message."""


class PermissionDeniedError(LiftbridgeError):
    """The server refused the operation for this client's identity."""


class NotLeaderError(LiftbridgeError):
    """The request reached a broker that does not lead the partition (stale metadata)."""

    retryable = True


class NoKnownLeaderError(LiftbridgeError):
    """The cluster has no metadata leader yet (an election is under way)."""

    retryable = True


class ConsumerGroupError(LiftbridgeError):
    """A consumer-group operation failed."""


_BY_CODE: dict[StatusCode, type[LiftbridgeError]] = {
    StatusCode.CANCELLED: CancelledError,
    StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    StatusCode.UNAVAILABLE: UnavailableError,
    StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    StatusCode.UNAUTHENTICATED: PermissionDeniedError,
}


def error_from_status(status: Status, message: str = "") -> LiftbridgeError:
    """Build the generic error for a failed status.

    Call-specific meanings (NOT_FOUND on DeleteStream means the stream does not
    exist, on Subscribe that the partition does not exist) are applied by the
    client on top of this; here only meanings that hold for every call are used.
    """
    if status.code is StatusCode.INTERNAL and "no known metadata leader" in status.message:
        return NoKnownLeaderError(message, status=status)
    cls = _BY_CODE.get(status.code, RpcError)
    return cls(message, status=status)
