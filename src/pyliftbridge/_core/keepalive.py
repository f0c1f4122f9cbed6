"""Keepalive PING policy, with the clock passed in.

gRFC A8 semantics: a PING goes out when nothing has been read for
``interval`` seconds (measured from the last byte read, not the last ping),
and the connection is considered dead when its ack does not arrive within
``timeout``. grpc-go servers, Liftbridge included, answer PINGs more frequent
than every 5 minutes with GOAWAY ENHANCE_YOUR_CALM "too_many_pings"; the
interval is therefore never shorter than ``min_interval`` (300 s unless the
caller knows the server permits more) and doubles after such a GOAWAY.
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

    @property
    def enabled(self) -> bool:
        """True when keepalive pings are on."""
        return self.interval is not None

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
            return KeepaliveAction.NOTHING
        if now - self._last_read >= self.interval:
            self._ping_sent_at = now
            return KeepaliveAction.SEND_PING
        return KeepaliveAction.NOTHING

    def seconds_until_due(self, now: float) -> float | None:
        """Seconds until :meth:`poll` may have something to do, or None if never."""
        if self.interval is None:
            return None
        if self._ping_sent_at is not None:
            return max(0.0, self._ping_sent_at + self.timeout - now)
        return max(0.0, self._last_read + self.interval - now)
