"""Notebook 04's engine: every polling strategy side by side, one lane per strategy.

    from helpers.compare import ComparePanel, Comparison, table_text

    with Comparison(clients=3, rate=0.5) as lab:   # four servers, one per lane
        results = lab.run(seconds=10)              # a ComparisonResult
        print(table_text(results))

The package's modules, one job each:

    spec        what a lane is: LaneSpec, LANES, Scenario, Preset, PRESETS
    lane        how a lane runs: its clients, publisher, /stats sampler and measurements
    fanout      the shared trigger: one moment handed to every lane (FanOut)
    timeline    the measurement's clock and its samples over time
    results     the typed records: LaneResult, ComparisonResult (and results.json)
    comparison  the orchestrator: Comparison
    table       the table, as text and HTML
    figures     the plots
    panel       ComparePanel, the live widget view (needs ipywidgets)
    cli         `python -m helpers.compare`

The panel is imported only when it is asked for, so the engine and the CLI run without
ipywidgets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from helpers.compare.comparison import Comparison
from helpers.compare.fanout import FanOut
from helpers.compare.figures import report_figure
from helpers.compare.results import ComparisonResult, LaneResult
from helpers.compare.spec import (
    EVERY_LANE,
    LANES,
    PRESETS,
    STREAM_LANES,
    LaneSpec,
    Preset,
    Scenario,
    find_preset,
    parse_lanes,
)
from helpers.compare.table import table_html, table_text

if TYPE_CHECKING:
    from helpers.compare.panel import ComparePanel

__all__ = [
    "EVERY_LANE",
    "LANES",
    "STREAM_LANES",
    "PRESETS",
    "ComparePanel",
    "Comparison",
    "ComparisonResult",
    "FanOut",
    "LaneResult",
    "LaneSpec",
    "Preset",
    "Scenario",
    "find_preset",
    "parse_lanes",
    "report_figure",
    "table_html",
    "table_text",
]


def __getattr__(name: str) -> Any:
    """PEP 562: `helpers.compare.ComparePanel` imports the panel (and ipywidgets) on first use."""
    if name == "ComparePanel":
        from helpers.compare.panel import ComparePanel

        return ComparePanel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
