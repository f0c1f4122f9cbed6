"""Measuring a run cheaply: an HDR latency histogram, counters, a throughput timeline.

The hot path costs one :meth:`Meter.done` per ack (a clock read and an array
append); the latencies go into the HDR histogram after the measured phase, and
the timeline and progress line are a sampler thread's work a few times per
second.
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from typing import Any, Callable

from ._errors import require

__all__ = ["LatencyHistogram", "Meter", "Sampler", "load_histogram_module"]

#: Latencies are recorded in microseconds, from 1 µs to 10 minutes, 3 significant digits.
_LOWEST_US = 1
_HIGHEST_US = 600_000_000
_SIGNIFICANT_DIGITS = 3

#: The percentiles reported, and their names in the JSON report.
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99_9", 99.9))


def load_histogram_module() -> Any:
    """The ``hdrh.histogram`` module, or MissingExtraError naming ``pyliftbridge[cli]``."""
    return require("hdrh.histogram", package="hdrhistogram", feature="pyliftbridge bench")


class LatencyHistogram:
    """An HDR histogram of latencies (microsecond resolution), reported in milliseconds."""

    def __init__(self) -> None:
        module = load_histogram_module()
        self._histogram = module.HdrHistogram(_LOWEST_US, _HIGHEST_US, _SIGNIFICANT_DIGITS)

    def record_all_ns(self, nanoseconds: Iterable[int]) -> None:
        """Record latencies given in nanoseconds (each value once per time it occurs)."""
        # Equal microsecond values are recorded together: far fewer histogram calls.
        counts = Counter(ns // 1000 for ns in nanoseconds)
        for micros, count in counts.items():
            self._histogram.record_value(min(max(micros, _LOWEST_US), _HIGHEST_US), count)

    @property
    def count(self) -> int:
        """Number of latencies recorded."""
        return int(self._histogram.get_total_count())

    def summary_ms(self) -> dict[str, float] | None:
        """min, mean, p50, p90, p99, p99.9 and max in milliseconds (None when empty)."""
        h = self._histogram
        if self.count == 0:
            return None
        summary = {"min": h.get_min_value() / 1000.0, "mean": h.get_mean_value() / 1000.0}
        for name, percentile in PERCENTILES:
            summary[name] = h.get_value_at_percentile(percentile) / 1000.0
        summary["max"] = h.get_max_value() / 1000.0
        return summary

    def curve_ms(self, points: int = 200) -> list[tuple[float, float]]:
        """(percentile, latency ms) pairs from 0 up to the max, spaced for a log "nines" axis."""
        count = self.count
        if count == 0:
            return []
        # x = -log10(1 - p): 0 at p0, 1 at p90, 2 at p99... up to what the count can resolve.
        top = max(1.0, math.log10(count))
        curve = []
        for i in range(points + 1):
            percentile = 100.0 * (1.0 - 10.0 ** (-top * i / points))
            curve.append((percentile, self._histogram.get_value_at_percentile(percentile) / 1000.0))
        return curve


class Meter:
    """Counts of completed and failed operations, with their latencies.

    Safe to call from several threads (the blocking client resolves futures on
    its connections' reader threads): a success is one ``array.append`` of its
    latency, atomic in CPython and PyPy alike, so the hot path takes no lock.
    The latencies go into the histogram after the measured phase
    (:meth:`fill_histogram`), where their cost is not measured.
    """

    def __init__(self, histogram: LatencyHistogram | None) -> None:
        self.errors = 0
        self.first_error: BaseException | None = None
        self._histogram = histogram
        self._latencies = array("q")
        self._uncounted = 0
        self._lock = threading.Lock()

    @property
    def done_count(self) -> int:
        """Operations completed successfully so far."""
        return len(self._latencies) + self._uncounted

    def done(self, sent_ns: int, error: BaseException | None = None) -> None:
        """One operation started at ``sent_ns`` (``perf_counter_ns``) ended now."""
        if error is None:
            self._latencies.append(time.perf_counter_ns() - sent_ns)
            return
        with self._lock:
            self.errors += 1
            if self.first_error is None:
                self.first_error = error

    def callback(self, sent_ns: int) -> Callable[[Any], None]:
        """A done-callback for a publish future sent at ``sent_ns``."""

        def on_done(future: Future[Any]) -> None:
            error: BaseException | None = _Cancelled() if future.cancelled() else None
            if error is None:
                error = future.exception()
            self.done(sent_ns, error)

        return on_done

    def count_one(self) -> None:
        """One more operation without a latency (a consumed message; one thread only)."""
        self._uncounted += 1

    def fill_histogram(self) -> None:
        """Record every latency in the histogram (once, after the measured phase)."""
        if self._histogram is not None:
            self._histogram.record_all_ns(self._latencies)
        self._uncounted += len(self._latencies)
        self._latencies = array("q")


class _Cancelled(Exception):
    def __str__(self) -> str:
        return "the publish was cancelled"


class Sampler:
    """A thread that samples a meter's count a few times per second while a phase runs.

    It keeps ``(seconds since start, count)`` points for the throughput curve and
    calls ``report(count, seconds)`` for the progress line. Use as a context
    manager around the measured phase.
    """

    def __init__(
        self,
        meter: Meter,
        report: Callable[[int, float], None],
        interval: float = 0.2,
    ) -> None:
        self.points: list[tuple[float, int]] = []
        self._meter = meter
        self._report = report
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pyliftbridge-bench-sampler")
        self._thread.daemon = True
        self._started = 0.0

    def __enter__(self) -> Sampler:
        self._started = time.perf_counter()
        self.points.append((0.0, self._meter.done_count))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(final=True)

    def _sample(self, final: bool = False) -> None:
        elapsed = time.perf_counter() - self._started
        count = self._meter.done_count
        if final and len(self.points) > 1 and elapsed - self.points[-1][0] < self._interval / 2:
            # A sliver of an interval gives a meaningless rate: extend the last one.
            self.points[-1] = (elapsed, count)
        else:
            self.points.append((elapsed, count))
        self._report(count, elapsed)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def rates(self) -> Iterator[tuple[float, float]]:
        """(time, operations per second) over each sampling interval."""
        for (t0, n0), (t1, n1) in zip(self.points, self.points[1:]):
            if t1 > t0:
                yield t1, (n1 - n0) / (t1 - t0)
