"""Notebook 07's section 5: `connection_costs_each`, live on loopback."""

from __future__ import annotations

import pytest

from helpers.delivery import connection_costs_each


@pytest.mark.live
def test_each_style_is_measured_alone_on_a_server_of_its_own() -> None:
    rows = connection_costs_each(("long", "sse"), connections=20, events=3, rate=20)
    assert [r.style for r in rows] == ["long", "sse"]
    for row in rows:
        # every connection of the one style held, every event to every client, nothing lost
        assert row.connections == 20 and row.deliveries == 60, row
        assert row.missing == row.duplicates == 0, row
