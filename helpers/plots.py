"""Plots drawn without pyplot's global state, so a panel's timer thread can draw them safely."""

from __future__ import annotations

import io
from collections.abc import Sequence

from matplotlib.figure import Figure


def figure_png(fig: Figure) -> bytes:
    """Render a figure to PNG bytes (for an ipywidgets.Image, which swaps without flicker)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi)
    return buffer.getvalue()


def latency_figure(points: Sequence[tuple[float, float]], started: float, *,
                   reference_ms: float | None = None, reference_label: str = "",
                   title: str = "Delivery latency of each event") -> Figure:
    """Each delivery as a dot: seconds since `started` against latency in ms.

    `reference_ms` draws a dashed line, for example the expected mean of half an interval.
    """
    fig = Figure(figsize=(7.5, 2.8), dpi=96, layout="constrained")
    ax = fig.add_subplot()
    if points:
        ax.scatter([t - started for t, _ in points], [ms for _, ms in points], s=14,
                   alpha=0.7, color="tab:blue", label="one delivered event")
    if reference_ms is not None:
        ax.axhline(reference_ms, color="tab:red", linestyle="--", linewidth=1,
                   label=reference_label or f"{reference_ms:.0f} ms")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("latency (ms)")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if points or reference_ms is not None:
        ax.legend(loc="upper left", fontsize=8)
    return fig
