"""Keepalive PING policy, with the clock passed in.

gRFC A8 semantics: a PING goes out when nothing has been read for
``interval`` seconds (measured from the last byte read, not the last ping),
and the connection is considered dead when its ack does not arrive within
``timeout``. grpc-go servers, Liftbridge included, answer PINGs more frequent
than every 5 minutes with GOAWAY ENHANCE_YOUR_CALM "too_many_pings"; the
interval is therefore never shorter than ``min_interval`` (300 s unless the
caller knows the server permits more) and doubles after such a GOAWAY, for
every later connection too (:meth:`KeepalivePolicy.renewed`).
"""

from __future__ import annotations

import enum

from ..errors import InvalidArgumentError

__all__ = ["KeepaliveAction", "KeepalivePolicy"]

#: grpc-go's default server enforcement (keepalive.EnforcementPolicy.MinTime).
GRPC_GO_MIN_PING_INTERVAL = 300.0


class KeepaliveAction(enum.Enum):
    """What the driver should do now."""

    NOTHING = 0
    SEND_PING = 1
    CONNECTION_DEAD = 2


class KeepalivePolicy:
    """Decides when to ping and when a silent connection is dead.

    Args:
        interval: seconds of read silence before a PING; None disables keepalive.
        timeout: seconds to wait for the PING's ack.
        min_interval: lower bound for ``interval`` (the server's enforcement).
        permit_without_calls: ping even when no call is active (grpc-go
            servers refuse that by default).
    """

    def __init__(
        self,
        interval: float | None,
        *,
        timeout: float = 20.0,
        min_interval: float = GRPC_GO_MIN_PING_INTERVAL,
        permit_without_calls: bool = False,
    ) -> None:
        if interval is not None and interval <= 0:
            raise InvalidArgumentError("keepalive interval must be positive")
        if timeout <= 0:
            raise InvalidArgumentError("keepalive timeout must be positive")
        self.interval = None if interval is None else max(interval, min_interval)
        self.timeout = timeout
        self.permit_without_calls = permit_without_calls
        self._last_read = 0.0
        self._ping_sent_at: float | None = None
        # When poll last found no call to keep alive (None: it found one).
        self._idle_at: float | None = None

    @property
    def enabled(self) -> bool:
        """True when keepalive pings are on."""
        return self.interval is not None

    def renewed(self) -> KeepalivePolicy:
        """A policy for the next connection to the same server.

        It keeps the current interval: the back-off after ``too_many_pings``
        must outlive the connection the server then closes, or every new
        connection pings as often and is closed again (grpc-go keeps it on the
        ClientConn for the same reason).
        """
        policy = KeepalivePolicy(
            None, timeout=self.timeout, permit_without_calls=self.permit_without_calls
        )
        policy.interval = self.interval
        return policy

    def start(self, now: float) -> None:
        """The connection is up."""
        self._last_read = now

    def data_received(self, now: float) -> None:
        """Bytes arrived: the connection is alive."""
        self._last_read = now
        self._ping_sent_at = None

    def too_many_pings(self) -> None:
        """The server complained: ping half as often from now on."""
        if self.interval is not None:
            self.interval *= 2

    def poll(self, now: float, active_calls: int) -> KeepaliveAction:
        """Return what to do at time ``now``."""
        if self.interval is None:
            return KeepaliveAction.NOTHING
        if self._ping_sent_at is not None:
            if now - self._ping_sent_at >= self.timeout:
                return KeepaliveAction.CONNECTION_DEAD
            return KeepaliveAction.NOTHING
        if active_calls == 0 and not self.permit_without_calls:
            self._idle_at = now
            return KeepaliveAction.NOTHING
        self._idle_at = None
        if now - self._last_read >= self.interval:
            self._ping_sent_at = now
            return KeepaliveAction.SEND_PING
        return KeepaliveAction.NOTHING

    def seconds_until_due(self, now: float) -> float | None:
        """Seconds until :meth:`poll` may have something to do, or None if never."""
        if self.interval is None:
            return None
        if self._ping_sent_at is not None:
            # The ack (any read) makes the next PING due one interval after
            # it: wake then too, so that a driver need not re-arm its timer on
            # every read to keep to the interval when the timeout is longer.
            sent = self._ping_sent_at
            due = min(sent + self.interval, sent + self.timeout)
            if due <= now:
                due = sent + self.timeout
            return max(0.0, due - now)
        due = self._last_read + self.interval
        if self._idle_at is not None:
            # No call to keep alive: look again one interval later rather than
            # at once and forever. A call started meanwhile gets its PING at
            # most that late, the bound the read-silence rule has anyway.
            due = max(due, self._idle_at + self.interval)
        return max(0.0, due - now)
