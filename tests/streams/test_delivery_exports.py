"""helpers.delivery, notebook 07's engine: its public names, and no ipywidgets until the panel."""

from __future__ import annotations

import subprocess
import sys

import helpers.delivery

EXPECTED = [
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


def test_all_lists_exactly_the_public_names() -> None:
    assert helpers.delivery.__all__ == EXPECTED
    for name in EXPECTED:
        assert getattr(helpers.delivery, name) is not None


def test_the_measurements_import_without_ipywidgets() -> None:
    code = ("import sys; from helpers.delivery import compare_at_rates, connection_costs; "
            "assert 'ipywidgets' not in sys.modules, 'ipywidgets was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
