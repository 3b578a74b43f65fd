"""Notebook 07's engine: long polling, SSE and WebSocket measured on one event stream.

    from helpers.delivery import compare_at_rates, connection_costs, resume_after_drop

`StylesPanel` (the live panel, one lane per delivery style) is imported lazily, so that the
measurements run without ipywidgets.
"""

from typing import Any

from helpers.delivery.exercise import check_parser
from helpers.delivery.lesson import (
    STYLES,
    TITLES,
    CostRow,
    RateRow,
    ResumeRow,
    client_for,
    compare_at_rates,
    connection_costs,
    connection_costs_each,
    first_messages,
    resume_after_drop,
)
from helpers.delivery.wire import WireCounter, WireCounts

__all__ = [
    "STYLES",
    "TITLES",
    "CostRow",
    "RateRow",
    "ResumeRow",
    "StylesPanel",
    "WireCounter",
    "WireCounts",
    "check_parser",
    "client_for",
    "compare_at_rates",
    "connection_costs",
    "connection_costs_each",
    "first_messages",
    "resume_after_drop",
]


def __getattr__(name: str) -> Any:
    if name == "StylesPanel":
        from helpers.delivery.panel import StylesPanel

        return StylesPanel
    raise AttributeError(f"module 'helpers.delivery' has no attribute {name!r}")
