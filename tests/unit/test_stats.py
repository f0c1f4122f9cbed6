"""The latency histogram behind ``ClientStats.publishes.ack_latency``."""

from __future__ import annotations

import random
from datetime import timedelta

from pyliftbridge._stats import LatencyHistogram, PublishCounters, _bucket_high, _bucket_of


def test_buckets_are_contiguous_and_bounded() -> None:
    previous = -1
    for us in [*range(5000), *(random.randrange(1 << 36) for _ in range(2000))]:
        index = _bucket_of(us)
        assert _bucket_high(index) >= us
        low = _bucket_high(index - 1) + 1 if index else 0
        assert low <= us
        # Each bucket is narrow: 1/16 of its value at most.
        assert _bucket_high(index) - low <= max(1, us // 16)
    for index in range(_bucket_of((1 << 36) - 1) + 1):
        high = _bucket_high(index)
        assert high > previous
        previous = high
    assert len(LatencyHistogram().buckets) == _bucket_of((1 << 36) - 1) + 1


def test_percentiles_are_within_the_bucket_width() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(-7, 1.5) for _ in range(20000)]
    histogram = LatencyHistogram()
    for value in values:
        histogram.record(value)
    exact = sorted(int(v * 1e6) for v in values)
    for fraction in (0.5, 0.9, 0.99, 0.999):
        truth = exact[int(fraction * len(exact) + 0.999999) - 1]
        assert abs(histogram.percentile(fraction) - truth) <= truth / 16 + 1
    summary = histogram.summary()
    assert summary.count == 20000
    assert summary.min == timedelta(microseconds=exact[0])
    assert summary.max == timedelta(microseconds=exact[-1])


def test_out_of_range_values_are_clamped_and_empty_is_zero() -> None:
    histogram = LatencyHistogram()
    assert histogram.summary().p99 == timedelta(0)
    histogram.record(-1.0)
    histogram.record(10**9)
    assert histogram.min_us == 0
    assert histogram.max_us == (1 << 36) - 1
    assert histogram.summary().count == 2


def test_counters_add_up() -> None:
    a, b = PublishCounters(), PublishCounters()
    a.sent, b.sent = 2, 3
    a.fail(TimeoutError)
    b.fail(TimeoutError, 2)
    b.latency.record(0.001)
    a.add(b)
    assert (a.sent, a.failed, a.latency.count) == (5, {"TimeoutError": 3}, 1)


def test_batch_recording_matches_one_at_a_time() -> None:
    rng = random.Random(3)
    now = 1000.0
    # Out of range values (negative, beyond 19 hours) are clamped one at a time.
    starts = [now - rng.choice([-1.0, 0.0, 1e-6, 3e-5, 0.002, 0.5, 30.0, 1e6]) for _ in range(500)]
    one, batch = LatencyHistogram(), LatencyHistogram()
    for start in starts:
        one.record(now - start)
    batch.record_since(now, starts)
    batch.record_since(now, [])
    assert batch.buckets == one.buckets
    assert (batch.count, batch.min_us, batch.max_us) == (one.count, one.min_us, one.max_us)
    assert abs(batch.total_us - one.total_us) <= batch.count  # rounding only


def test_small_batches_are_recorded_whole() -> None:
    rng = random.Random(5)
    now = 12345.678
    one, batch = LatencyHistogram(), LatencyHistogram()
    for _ in range(200):
        starts = [now - rng.uniform(0, 0.2) for _ in range(rng.randrange(1, 9))]
        for start in starts:
            one.record(now - start)
        batch.record_since(now, starts)
    assert batch.buckets == one.buckets
    assert (batch.count, batch.min_us, batch.max_us) == (one.count, one.min_us, one.max_us)
    assert abs(batch.total_us - one.total_us) <= batch.count


def test_large_batches_are_sampled_without_bias() -> None:
    rng = random.Random(9)
    now = 500.0
    one, batch = LatencyHistogram(), LatencyHistogram()
    for size in (9, 31, 64, 100, 1000):
        for _ in range(50):
            starts = [now - rng.lognormvariate(-6, 1) for _ in range(size)]
            for start in starts:
                one.record(now - start)
            batch.record_since(now, starts)
    # Exact: count, min, max, mean; the weights add up to the count.
    assert sum(batch.buckets) == batch.count == one.count
    assert (batch.min_us, batch.max_us) == (one.min_us, one.max_us)
    assert abs(batch.total_us - one.total_us) <= batch.count
    # Percentiles from the sample stay close to the exact ones.
    for fraction in (0.5, 0.9, 0.99):
        exact = one.percentile(fraction)
        assert abs(batch.percentile(fraction) - exact) <= exact * 0.15, fraction
