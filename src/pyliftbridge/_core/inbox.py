"""Per-call receive queue shared by both front ends.

The driver files each call's events here as they come off the connection;
the application takes messages out. What "the next thing a reader sees" is
-- a message (whose flow-control credit goes back to the core as it is
taken), the end of the call, or its error -- is decided here once for both
front ends, which only add waiting.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Final, NamedTuple, Protocol, Union

from .._status import Metadata, Status
from ..errors import LiftbridgeError, ProtocolError, error_from_status
from .connection import GrpcConnection
from .events import CallEnded, Event, MessageReceived, ResponseHeaders

__all__ = [
    "EMPTY",
    "CallInbox",
    "MessageSink",
    "SinkBatch",
    "Taken",
    "TakenBatch",
    "remaining_time",
]

log = logging.getLogger("pyliftbridge")


class _Empty:
    __slots__ = ()

    def __repr__(self) -> str:
        return "EMPTY"


#: What :meth:`CallInbox.take` returns when nothing has arrived yet.
EMPTY: Final = _Empty()

Taken = Union[bytes, None, _Empty]
TakenBatch = Union[list[bytes], None, _Empty]


class MessageSink(Protocol):
    """Takes a call's messages as they arrive, instead of a reader pulling them.

    The front end calls it with no lock held, from the thread (or the event
    loop callback) that read the messages: the publisher resolves acks
    where they are read instead of handing each one to another thread. A
    sink must not block.
    """

    def on_messages(self, messages: list[bytes]) -> None:
        """Messages that arrived, in order."""

    def on_end(self, error: LiftbridgeError | None) -> None:
        """The call ended: None for OK, else its mapped error. Called once, last."""


class SinkBatch(NamedTuple):
    """What arrived for a call with a sink, taken from its inbox, to hand over."""

    sink: MessageSink
    messages: list[bytes]
    ended: bool
    error: LiftbridgeError | None

    def deliver(self) -> None:
        """Hand it to the sink (no lock may be held); a sink's bug is logged, not raised."""
        try:
            if self.messages:
                self.sink.on_messages(self.messages)
            if self.ended:
                self.sink.on_end(self.error)
        except Exception:  # it must not stop the front end's reading
            log.exception("pyliftbridge message sink failed")


class CallInbox:
    """Events received for one call and not yet taken by the application."""

    __slots__ = ("_error", "_events", "initial_metadata", "sink", "status", "transparent_retry")

    def __init__(self) -> None:
        self._events: deque[Event] = deque()
        #: The server's response headers (custom metadata), once received.
        self.initial_metadata: Metadata = ()
        #: How the call ended; None while it runs.
        self.status: Status | None = None
        #: True when the server provably never saw the call (safe to resend).
        self.transparent_retry = False
        #: Where messages go as they arrive, when the call has a sink.
        self.sink: MessageSink | None = None
        #: The client's own error for a call it ended (see ``CallEnded.error``).
        self._error: LiftbridgeError | None = None

    @property
    def done(self) -> bool:
        """True once the call has ended (messages may still be waiting)."""
        return self.status is not None

    @property
    def pending_messages(self) -> int:
        """Messages received and not yet taken."""
        return sum(type(e) is MessageReceived for e in self._events)

    def deliver(self, event: Event) -> None:
        """File one core event for this call."""
        if type(event) is CallEnded:
            self.status = event.status
            self.transparent_retry = event.transparent_retry
            self._error = event.error
        self._events.append(event)

    def take(self, core: GrpcConnection, call_id: int) -> tuple[Taken, bool]:
        """Return ``(item, flush)``: the next message, None at a clean end, or EMPTY.

        ``flush`` is True when the credit returned for the message asks the
        driver to write soon. The end of a call stays queued, so every later
        ``take`` gives the same answer.

        Raises:
            LiftbridgeError: the call ended with an error status (mapped).
        """
        events = self._events
        while events:
            event = events.popleft()
            if type(event) is MessageReceived:
                credit = event.flow_controlled_length
                flush = bool(credit) and core.acknowledge(call_id, credit)
                return event.data, flush
            if type(event) is ResponseHeaders:
                self.initial_metadata = event.metadata
                continue
            events.appendleft(event)
            if self.status is None or self.status.ok:
                return None, False
            raise self.error()
        return EMPTY, False

    def take_batch(self, core: GrpcConnection, call_id: int) -> tuple[TakenBatch, bool]:
        """Like :meth:`take`, but every message that is queued at once (a non-empty list).

        Their credit goes back in one step, so a subscriber pays the flow
        control bookkeeping (and the front end's lock) once per read rather
        than once per message. The end of the call is left queued until the
        messages before it have been taken.
        """
        events = self._events
        messages: list[bytes] = []
        credit = 0
        while events:
            event = events[0]
            if type(event) is MessageReceived:
                events.popleft()
                messages.append(event.data)
                credit += event.flow_controlled_length
            elif type(event) is ResponseHeaders:
                events.popleft()
                self.initial_metadata = event.metadata
            else:
                break
        if messages:
            return messages, bool(credit) and core.acknowledge(call_id, credit)
        if not events:
            return EMPTY, False
        if self.status is None or self.status.ok:
            return None, False
        raise self.error()

    def drain(
        self, core: GrpcConnection, call_id: int
    ) -> tuple[list[bytes], bool, bool, LiftbridgeError | None]:
        """Take everything queued at once, for a sink: ``(messages, flush, ended, error)``.

        The credit of all the messages goes back in one step. ``ended`` is
        True once, when the end of the call is taken; ``error`` is then its
        mapped error (None for OK).
        """
        events = self._events
        messages: list[bytes] = []
        credit = 0
        ended = False
        while events:
            event = events.popleft()
            if type(event) is MessageReceived:
                messages.append(event.data)
                credit += event.flow_controlled_length
            elif type(event) is ResponseHeaders:
                self.initial_metadata = event.metadata
            elif type(event) is CallEnded:
                ended = True
        flush = bool(credit) and core.acknowledge(call_id, credit)
        status = self.status
        error = self.error() if ended and status and not status.ok else None
        return messages, flush, ended, error

    def take_for_sink(self, core: GrpcConnection, call_id: int) -> SinkBatch | None:
        """Everything queued, for the call's sink (None when it has none)."""
        sink = self.sink
        if sink is None:
            return None
        messages, _, ended, error = self.drain(core, call_id)
        return SinkBatch(sink, messages, ended, error)

    def check_sendable(self) -> None:
        """Raise why nothing more can be sent, if the call has ended."""
        status = self.status
        if status is not None:
            if status.ok:
                raise ProtocolError("call already ended")
            raise self.error()

    def error(self) -> LiftbridgeError:
        """The mapped error of a call that ended with an error status."""
        assert self.status is not None
        if self._error is not None:
            return self._error
        return error_from_status(self.status)


def remaining_time(deadline: float | None, until: float | None, now: float) -> float | None:
    """Seconds to wait: until the sooner of the call's deadline and the end of a wait."""
    limits = []
    if deadline is not None:
        limits.append(deadline - now)
    if until is not None:
        limits.append(until - now)
    if not limits:
        return None
    return max(0.0, min(limits))
