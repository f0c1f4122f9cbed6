"""Choosing the partition a message is published to.

A partitioner is any callable ``(stream, key, value, partition_count) ->
partition``. The two built in here reproduce go-liftbridge's choices, so
Python and Go producers sharing a stream put equal keys on equal partitions.
"""

from __future__ import annotations

import threading
import zlib
from typing import Callable, Optional

from .errors import InvalidArgumentError

__all__ = ["KeyPartitioner", "Partitioner", "RoundRobinPartitioner", "cursors_partition"]

#: ``(stream, key, value, partition_count) -> partition``; ``key`` is None when
#: the message has none. Must return a number in ``range(partition_count)``
#: (0 when ``partition_count`` is 0).
Partitioner = Callable[[str, Optional[bytes], bytes, int], int]


class KeyPartitioner:
    """Partition by key: ``crc32(key) % partition_count``.

    Exactly go-liftbridge's ``PartitionByKey``: CRC-32/IEEE of the key (a
    missing key hashes as empty, so keyless messages all go to partition 0),
    taken as unsigned, modulo the partition count.
    """

    __slots__ = ()

    def __call__(self, stream: str, key: bytes | None, value: bytes, partition_count: int) -> int:
        """Return the partition for ``key``."""
        if partition_count <= 0:
            return 0
        # zlib.crc32 is CRC-32/IEEE and already unsigned on Python 3.
        return zlib.crc32(key or b"") % partition_count

    def __repr__(self) -> str:
        return "KeyPartitioner()"


class RoundRobinPartitioner:
    """Spread messages over partitions in turn, separately for each stream.

    Counters belong to the instance (go-liftbridge shares one per process) and
    start at 0, so the first message of each stream goes to partition 0. Safe
    to share between threads. Python integers do not overflow, so unlike Go's
    int32 counter the choice never turns negative.
    """

    __slots__ = ("_counters", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}

    def __call__(self, stream: str, key: bytes | None, value: bytes, partition_count: int) -> int:
        """Return the next partition for ``stream``."""
        if partition_count <= 0:
            return 0
        with self._lock:
            n = self._counters.get(stream, 0)
            self._counters[stream] = n + 1
        return n % partition_count

    def __repr__(self) -> str:
        return "RoundRobinPartitioner()"


def cursors_partition(cursor_id: str, stream: str, partition: int, partition_count: int) -> int:
    """The ``__cursors`` partition holding cursor ``cursor_id`` for ``stream``/``partition``.

    The server keys cursors as ``"<cursor_id>,<stream>,<partition>"`` (commas,
    whatever older docs say) and stores each in partition ``crc32(key) %
    partition_count``; SetCursor/FetchCursor must go to that partition's leader.

    Raises:
        ValueError: ``partition_count`` < 1 (the cursors stream is missing or
            disabled; as an :class:`~pyliftbridge.errors.InvalidArgumentError`).
    """
    if partition_count <= 0:
        raise InvalidArgumentError(
            "the __cursors stream has no partitions (cursors are disabled on the server: "
            "set cursors.stream.partitions > 0)"
        )
    key = f"{cursor_id},{stream},{partition}".encode()
    return zlib.crc32(key) % partition_count
