"""Tests of pyliftbridge.partitioners (go-liftbridge compatible choices)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from pyliftbridge.errors import InvalidArgumentError
from pyliftbridge.partitioners import (
    KeyPartitioner,
    Partitioner,
    RoundRobinPartitioner,
    cursors_partition,
)


def _crc32_ieee(data: bytes) -> int:
    """Bit-by-bit CRC-32/IEEE (reflected poly 0xEDB88320), Go's crc32.ChecksumIEEE."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xEDB88320 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def test_reference_crc_matches_published_check_value() -> None:
    # The CRC catalogue's check value of CRC-32/ISO-HDLC for "123456789".
    assert _crc32_ieee(b"123456789") == 0xCBF43926


def test_key_partitioner_vectors() -> None:
    part = KeyPartitioner()
    assert _crc32_ieee(b"foo") == 2356372769
    assert part("s", b"foo", b"v", 3) == 2
    assert part("s", b"foo", b"v", 4) == 1
    assert part("s", b"foo", b"v", 1) == 0


def test_key_partitioner_missing_or_empty_key_hashes_as_empty() -> None:
    part = KeyPartitioner()
    assert _crc32_ieee(b"") == 0
    for count in (1, 2, 7):
        assert part("s", None, b"v", count) == 0
        assert part("s", b"", b"v", count) == 0


def test_key_partitioner_no_partitions_gives_zero() -> None:
    part = KeyPartitioner()
    assert part("s", b"foo", b"v", 0) == 0
    assert part("s", b"foo", b"v", -3) == 0


def test_key_partitioner_agrees_with_reference_crc() -> None:
    # High-bit hashes are where a signed (int32) modulo would go negative.
    part = KeyPartitioner()
    for i in range(300):
        key = f"key-{i}".encode() * (i % 5 + 1)
        for count in (2, 3, 5, 16, 1000):
            expected = _crc32_ieee(key) % count
            assert part("s", key, b"", count) == expected
            assert 0 <= expected < count


def test_key_partitioner_ignores_stream_and_value() -> None:
    part = KeyPartitioner()
    assert part("a", b"k", b"1", 5) == part("b", b"k", b"2", 5)


def test_round_robin_cycles_per_stream_from_zero() -> None:
    rr = RoundRobinPartitioner()
    assert [rr("a", None, b"", 3) for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    # Another stream has its own counter.
    assert [rr("b", None, b"", 2) for _ in range(3)] == [0, 1, 0]
    assert rr("a", None, b"", 3) == 1


def test_round_robin_instances_are_independent() -> None:
    first, second = RoundRobinPartitioner(), RoundRobinPartitioner()
    first("s", None, b"", 4)
    first("s", None, b"", 4)
    assert second("s", None, b"", 4) == 0


def test_round_robin_no_partitions_gives_zero_and_does_not_count() -> None:
    rr = RoundRobinPartitioner()
    assert rr("s", None, b"", 0) == 0
    assert rr("s", None, b"", 2) == 0


def test_round_robin_never_negative_past_int32() -> None:
    rr = RoundRobinPartitioner()
    rr._counters["s"] = 2**31 - 2  # where Go's int32 counter wraps negative
    got = [rr("s", None, b"", 3) for _ in range(4)]
    assert got == [(2**31 - 2 + i) % 3 for i in range(4)]
    assert all(p >= 0 for p in got)


def test_round_robin_is_thread_safe() -> None:
    rr = RoundRobinPartitioner()
    threads_n, per_thread, partitions = 8, 3000, 4
    results: list[list[int]] = [[] for _ in range(threads_n)]
    barrier = threading.Barrier(threads_n)

    def work(out: list[int]) -> None:
        barrier.wait()
        for _ in range(per_thread):
            out.append(rr("s", None, b"", partitions))

    threads = [threading.Thread(target=work, args=(r,)) for r in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = Counter(p for r in results for p in r)
    # No increment lost: a perfectly even spread.
    assert counts == {p: threads_n * per_thread // partitions for p in range(partitions)}
    assert rr._counters["s"] == threads_n * per_thread


def test_partitioners_fit_the_partitioner_type() -> None:
    chosen: list[Partitioner] = [KeyPartitioner(), RoundRobinPartitioner(), lambda s, k, v, n: 0]
    for p in chosen:
        assert p("s", b"k", b"v", 2) in (0, 1)


def test_cursors_partition_vector() -> None:
    assert _crc32_ieee(b"mycursor,foo,0") == 399515354
    assert cursors_partition("mycursor", "foo", 0, 10) == 4


def test_cursors_partition_uses_commas_and_all_parts() -> None:
    for count in (3, 7, 100):
        for cid, stream, part in (("c", "s", 1), ("__group:g", "orders", 12)):
            key = f"{cid},{stream},{part}".encode()
            assert cursors_partition(cid, stream, part, count) == _crc32_ieee(key) % count
    values = {cursors_partition("c", "s", p, 1000) for p in range(20)}
    assert len(values) > 1


def test_cursors_partition_without_cursors_stream() -> None:
    with pytest.raises(InvalidArgumentError, match="cursors"):
        cursors_partition("c", "s", 0, 0)
    with pytest.raises(ValueError):
        cursors_partition("c", "s", 0, -1)
