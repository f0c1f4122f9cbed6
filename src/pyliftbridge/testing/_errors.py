"""Errors raised by :mod:`pyliftbridge.testing`."""

from __future__ import annotations

from ..errors import LiftbridgeError


class ServerUnavailableError(LiftbridgeError):
    """No ``liftbridge`` or ``nats-server`` binary could be found or built.

    The message names the environment variable to set or the tool to install,
    and ends with the tail of the build output when a build was attempted.
    """


class ServerStartupError(LiftbridgeError):
    """A server process exited early or did not become ready in time.

    The message ends with the tail of the server's log.
    """
