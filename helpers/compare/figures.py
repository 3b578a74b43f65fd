"""The comparison's figures: latency over time, requests per second, the latency distribution.

Each one reads a `ComparisonResult` (or anything with a `results()` that returns one, such as
a running `Comparison`): the same named fields the table and results.json use.
"""

from __future__ import annotations

import math
from typing import Protocol

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from helpers.compare.results import ComparisonResult
from helpers.compare.spec import EVERY_LANE
from helpers.compare.table import fmt
from helpers.metrics import percentile


class Measured(Protocol):
    """Anything that can say what it measured, such as a `Comparison`."""

    def results(self) -> ComparisonResult: ...


def _results(source: ComparisonResult | Measured) -> ComparisonResult:
    return source if isinstance(source, ComparisonResult) else source.results()


def latency_axes(ax: Axes, results: ComparisonResult) -> None:
    """Each delivery as a faint dot, and each lane's median per second as a line (log scale)."""
    drawn = False
    for row in results.lanes:
        points = row.latency_points
        if not points:
            continue
        color = EVERY_LANE[row.lane].color
        if len(points) > 4000:  # keep the drawing quick; the line below uses every point
            points_shown = points[:: len(points) // 4000 + 1]
        else:
            points_shown = points
        ax.scatter([t for t, _ in points_shown], [max(ms, 0.1) for _, ms in points_shown],
                   s=5, alpha=0.25, color=color, linewidths=0)
        bins: dict[int, list[float]] = {}
        for t, ms in points:
            bins.setdefault(int(t), []).append(ms)
        xs: list[float] = []
        ys: list[float] = []
        for second in sorted(bins):
            if xs and second - xs[-1] > 1.5:  # no delivery for a while: break the line
                xs.append(math.nan)
                ys.append(math.nan)
            values = sorted(bins[second])
            xs.append(second + 0.5)
            ys.append(max(values[len(values) // 2], 0.1))
        ax.plot(xs, ys, color=color, marker="o", markersize=3, linewidth=1.5,
                linestyle=EVERY_LANE[row.lane].linestyle, label=row.lane)
        drawn = True
    ax.set_yscale("log")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("latency from trigger (ms)")
    ax.set_title("Latency of each delivery (dots) and median per second (lines)", fontsize=10)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(loc="upper left", fontsize=8)


def rate_axes(ax: Axes, results: ComparisonResult) -> None:
    """Requests per second of each lane over time, and the load generator's CPU on a second axis."""
    timeline = results.timeline
    ts = [point.t for point in timeline]
    for row in results.lanes:
        spec = EVERY_LANE[row.lane]
        ax.plot(ts, [point.requests_per_s.get(row.lane, 0) for point in timeline],
                color=spec.color, linestyle=spec.linestyle, linewidth=1.8, label=row.lane)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("requests / s")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    cpu_ax = ax.twinx()
    cpu_ax.plot(ts, [point.kernel_cpu_pct for point in timeline], color="0.45",
                linestyle=":", linewidth=1.2, label="load generator CPU")
    cpu_ax.set_ylabel("load generator CPU (% of a core)", color="0.35", fontsize=8)
    cpu_ax.set_ylim(0, max([100.0] + [p.kernel_cpu_pct for p in timeline]) * 1.05)
    cpu_ax.tick_params(labelsize=8, colors="0.35")
    ax.set_title("Requests per second, and the clients' own CPU (grey dots, right axis)",
                 fontsize=10)
    if timeline:
        ax.legend(loc="upper left", fontsize=8)


def distribution_axes(ax: Axes, results: ComparisonResult) -> None:
    """One box per lane: median, quartiles, whiskers at p5 and p95 (log scale)."""
    rows = results.lanes[::-1]  # first lane on top
    names = [row.lane for row in rows]
    shown = [ms for row in rows for _, ms in row.latency_points]
    for y, row in enumerate(rows, start=1):
        values = sorted(max(ms, 0.1) for _, ms in row.latency_points)
        color = EVERY_LANE[row.lane].color
        if not values:
            ax.text(0.02, y, "no event delivered", transform=ax.get_yaxis_transform(),
                    va="center", fontsize=9, color=color)
            continue
        p5, p25, p50, p75, p95 = (percentile(values, q) for q in (5, 25, 50, 75, 95))
        ax.hlines(y, p5, p95, color=color, linewidth=1.2)
        ax.vlines([p5, p95], y - 0.15, y + 0.15, color=color, linewidth=1.2)
        ax.barh(y, p75 - p25, left=p25, height=0.5, color=color, alpha=0.5,
                edgecolor=color)
        ax.vlines(p50, y - 0.25, y + 0.25, color="black", linewidth=2)
        ax.annotate(f"p50 {fmt(p50, 'ms')} ms", (p50, y + 0.3), fontsize=8, ha="center")
    ax.set_yticks(range(1, len(names) + 1), names)
    ax.set_ylim(0.4, len(names) + 0.7)
    if not shown:
        ax.set_xlim(1, 10_000)
    ax.set_xscale("log")
    ax.set_xlabel("latency from trigger (ms, log scale)")
    ax.set_title("Latency distribution per lane (box: p25–p75, whiskers: p5–p95)",
                 fontsize=10)
    ax.grid(alpha=0.3, axis="x")


# Fixed margins rather than layout="constrained": the live figure is redrawn every two seconds,
# and the constrained layout engine would double the CPU time each redraw takes.
def live_figure(source: ComparisonResult | Measured) -> Figure:
    """Latency over time and requests per second, side by side: what the panel redraws."""
    results = _results(source)
    fig = Figure(figsize=(11, 3.3), dpi=90)
    fig.subplots_adjust(left=0.065, right=0.935, bottom=0.15, top=0.9, wspace=0.3)
    left, right = fig.subplots(1, 2)
    latency_axes(left, results)
    rate_axes(right, results)
    return fig


def distribution_figure(source: ComparisonResult | Measured) -> Figure:
    """The latency distribution per lane: what the panel draws when a run ends."""
    results = _results(source)
    height = 0.9 + 0.55 * len(results.lanes)
    fig = Figure(figsize=(11, height), dpi=90)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.5 / height, top=1 - 0.3 / height)
    distribution_axes(fig.add_subplot(), results)
    return fig


def report_figure(source: ComparisonResult | Measured) -> Figure:
    """All three plots stacked, with the scenario as the title: the CLI's report.png."""
    results = _results(source)
    fig = Figure(figsize=(11, 10), dpi=90, layout="constrained")
    top, middle, bottom = fig.subplots(3, 1, height_ratios=[1.2, 1, 0.9])
    latency_axes(top, results)
    rate_axes(middle, results)
    distribution_axes(bottom, results)
    fig.suptitle(f"Polling strategies side by side — {results.scenario.describe()}",
                 fontsize=10)
    return fig
