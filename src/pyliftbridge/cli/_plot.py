"""``bench --plot FILE.png``: throughput over time, and the latency percentile curve."""

from __future__ import annotations

import math
from typing import Any

from ._errors import require

__all__ = ["load_matplotlib", "plot"]

_PLOT_INSTALL = "pip install matplotlib (or pip install 'pyliftbridge[cli]' on CPython)"


def load_matplotlib() -> tuple[Any, Any]:
    """``matplotlib.figure`` and ``.ticker``, or MissingExtraError saying what to install."""
    # The figure is built without pyplot: no GUI backend, no global state.
    figure = require(
        "matplotlib.figure", package="matplotlib", feature="--plot", install=_PLOT_INSTALL
    )
    ticker = require(
        "matplotlib.ticker", package="matplotlib", feature="--plot", install=_PLOT_INSTALL
    )
    return figure, ticker


def plot(
    path: str,
    result: dict[str, Any],
    rates: list[tuple[float, float]],
    curve: list[tuple[float, float]] | None,
) -> None:
    """Draw the run's charts into a PNG at ``path``."""
    figure_module, ticker = load_matplotlib()
    panels = 2 if curve else 1
    figure = figure_module.Figure(figsize=(6.5 * panels, 4.2), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    title = (
        f"pyliftbridge {result['mode']}: {result['messages']:,} x {result['message_size']} B, "
        f"{result['client']} client on {result['implementation']} {result['python_version']}"
    )
    figure.suptitle(title, fontsize=10)

    ax = axes[0]
    if rates:
        times, values = zip(*rates)
        # Each rate holds for the interval that ends at its time.
        ax.step([0.0, *times], [values[0], *values], where="pre", linewidth=1)
    ax.axhline(result["messages_per_second"], linestyle="--", linewidth=1, color="gray")
    ax.set_title(f"throughput (mean {result['messages_per_second']:,.0f} msg/s)", fontsize=10)
    ax.set_xlabel("seconds")
    ax.set_ylabel("messages per second")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)

    if curve:
        ax = axes[1]
        # x is the number of nines: 1 = p90, 2 = p99, 3 = p99.9.
        xs = [_nines(p) for p, _ in curve]
        ax.plot(xs, [ms for _, ms in curve], linewidth=1.5)
        ticks = list(range(min(5, math.ceil(max(xs))) + 1))
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(
            ticker.FixedFormatter(["p0", "p90", "p99", "p99.9", "p99.99", "p99.999"][: len(ticks)])
        )
        ax.set_title("ack latency by percentile (HDR histogram)", fontsize=10)
        ax.set_xlabel("percentile")
        ax.set_ylabel("milliseconds")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    figure.savefig(path, dpi=100)


def _nines(percentile: float, cap: float = 6.0) -> float:
    remaining = 1.0 - percentile / 100.0
    return cap if remaining <= 10**-cap else -math.log10(remaining)
