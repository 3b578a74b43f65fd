"""Notebook 07's section 5: `connection_costs_each`, live on loopback."""

from __future__ import annotations

import pytest

from helpers.delivery import connection_costs, connection_costs_each, lesson
from helpers.errors import PollingLabError


@pytest.mark.live
def test_each_style_is_measured_alone_on_a_server_of_its_own() -> None:
    rows = connection_costs_each(("long", "sse"), connections=20, events=3, rate=20)
    assert [r.style for r in rows] == ["long", "sse"]
    for row in rows:
        # every connection of the one style held, every event to every client, nothing lost
        assert row.connections == 20 and row.deliveries == 60, row
        assert row.missing == row.duplicates == 0, row


@pytest.mark.live
def test_a_crowd_that_cannot_all_connect_is_an_error_not_a_cost(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The server holds 5 polls at most (the rest get a 503 and retry): a cost per connection
    # measured on 5 of 20 would be wrong, so the measurement stops and says why.
    monkeypatch.setattr(lesson, "CROWD_S", 3.0)
    with pytest.raises(PollingLabError, match=r"only 5 of 20 long connections were open after "
                                              r"3 s \(\d+ connection errors"):
        connection_costs("long", connections=20, events=1, max_waiting=5)
