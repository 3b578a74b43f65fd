"""helpers.compare's public names: what notebook 04 and the CLI import, pinned."""

from __future__ import annotations

import helpers.compare

EXPECTED = [
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


def test_all_is_the_pinned_list_and_every_name_resolves() -> None:
    assert helpers.compare.__all__ == EXPECTED
    for name in EXPECTED:
        assert getattr(helpers.compare, name) is not None, name


def test_the_panel_is_the_panel_module_class_and_unknown_names_raise() -> None:
    from helpers.compare.panel import ComparePanel

    assert helpers.compare.ComparePanel is ComparePanel
    try:
        helpers.compare.NoSuchThing  # noqa: B018 - the attribute access is the test
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("helpers.compare.NoSuchThing should raise AttributeError")
