"""Notebook 04's engine: every polling strategy side by side, one lane per strategy.

    from helpers.compare import Comparison, ComparePanel, table_text
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from helpers.compare.cli import report_figure, table_text
from helpers.compare.comparison import Comparison

if TYPE_CHECKING:
    from helpers.compare.panel import ComparePanel

__all__ = ["ComparePanel", "Comparison", "report_figure", "table_text"]


def __getattr__(name: str) -> Any:
    # The panel needs ipywidgets; import it only when asked, so the engine and the CLI run
    # without widgets.
    if name == "ComparePanel":
        from helpers.compare.panel import ComparePanel

        return ComparePanel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
