"""What ``bench`` publishes, and the check that every message came back right.

Message ``seq`` of publisher ``pub`` is ``b"PPPP SSSSSSSSSSSS "`` followed by
filler that is the same for every message of a run, so a read-back message
says by itself who sent it, which key and partition it must have, and what its
bytes must be. Keys (with ``--key-partitioner``) are a deterministic
pseudo-random choice among ``keys`` distinct keys.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable

from .. import KeyPartitioner, Message
from ._errors import CliError

__all__ = ["HEADER_SIZE", "Workload"]

HEADER_SIZE = 18  # b"%04d %012d "
_KEY_TABLE = 4099  # a prime: publisher and sequence patterns do not line up with it
_MAX_PUBLISHERS = 10_000


class Workload:
    """Values, keys and partitions of a publish run, and their verification."""

    def __init__(
        self,
        *,
        size: int,
        partitions: int,
        publishers: int,
        keys: int | None,
        verify: bool = True,
    ) -> None:
        if size < HEADER_SIZE and verify:
            raise CliError(
                f"--size below {HEADER_SIZE} bytes leaves no room for the read-back check: "
                "add --no-verify"
            )
        if publishers >= _MAX_PUBLISHERS:
            raise CliError(f"--publishers must be below {_MAX_PUBLISHERS}")
        self.size = size
        self.partitions = partitions
        self.publishers = publishers
        self.keys = keys
        self.tail = os.urandom(size).hex().encode()[: max(0, size - HEADER_SIZE)]
        #: Without the check, messages too small for a header are all this value.
        self._fixed = os.urandom(size).hex().encode()[:size] if size < HEADER_SIZE else None
        self.partitioner = KeyPartitioner() if keys else None
        self._key_names = [b"key-%d" % i for i in range(keys or 0)]
        pick = random.Random(os.urandom(8))
        self._key_table = [pick.randrange(keys) for _ in range(_KEY_TABLE)] if keys else []

    def value(self, pub: int, seq: int) -> bytes:
        """Message ``seq`` of publisher ``pub``."""
        if self._fixed is not None:
            return self._fixed
        return b"%04d %012d " % (pub, seq) + self.tail

    def key(self, pub: int, seq: int) -> bytes | None:
        """Its key (None without ``--key-partitioner``)."""
        if not self._key_table:
            return None
        return self._key_names[self._key_table[(seq * self.publishers + pub) % _KEY_TABLE]]

    def partition(self, pub: int, seq: int) -> int | None:
        """Its partition: round robin, or None when the key partitioner chooses."""
        if self.partitioner is not None:
            return None
        return (seq + pub) % self.partitions

    def verify(self, messages: Iterable[Message], stream: str) -> int:
        """Check every message read back; returns how many there were.

        Raises:
            CliError: a message is not one this run sent, has the wrong key,
                partition or bytes, or arrived out of order (or twice).
        """
        last: dict[tuple[int, int], int] = {}
        count = 0
        for message in messages:
            value = message.value
            where = f"{stream}/{message.partition} offset {message.offset}"
            try:
                pub, seq = int(value[0:4]), int(value[5:17])
            except ValueError:
                raise CliError(f"message at {where} is not one this run sent") from None
            if value != self.value(pub, seq):
                raise CliError(f"message at {where} came back with different bytes")
            if message.key != self.key(pub, seq):
                raise CliError(f"message at {where} came back with a different key")
            expected = (
                (seq + pub) % self.partitions
                if self.partitioner is None
                else self.partitioner(stream, message.key, value, self.partitions)
            )
            if message.partition != expected:
                raise CliError(f"message {pub}/{seq} went to partition {message.partition}")
            previous = last.get((message.partition, pub), -1)
            if seq <= previous:
                raise CliError(
                    f"publisher {pub}'s message {seq} at {where} came after its message "
                    f"{previous} (out of order or duplicated)"
                )
            last[(message.partition, pub)] = seq
            count += 1
        return count
