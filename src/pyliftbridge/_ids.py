"""Correlation ids for publishes: a random per-generator prefix and a counter.

``uuid.uuid4()`` costs one ``os.urandom`` system call per message, which was
the largest single cost of a pipelined publish. Ids only need to be unique
among the publishes whose acks can reach this client, so, as NATS's nuid
does, 96 random bits are drawn once and a counter is appended: two clients
collide only if their prefixes do.
"""

from __future__ import annotations

import itertools
import os

__all__ = ["CorrelationIds"]


class CorrelationIds:
    """A source of unique correlation ids (thread-safe: ``next`` on a count is atomic)."""

    __slots__ = ("_counter", "prefix")

    def __init__(self) -> None:
        #: 24 hex digits drawn once; every id starts with them.
        self.prefix = os.urandom(12).hex()
        self._counter = itertools.count(1)

    def next(self) -> str:
        """The next id: the prefix, then the counter in hex."""
        return f"{self.prefix}{next(self._counter):x}"
