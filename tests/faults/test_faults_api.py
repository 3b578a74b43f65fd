"""helpers/faults/: notebook 06's public names, pinned, and the panel on the shared base."""

from __future__ import annotations

import helpers.faults
from helpers.faults.panel import Action, FaultPanel
from helpers.panel import PanelBase

EXPECTED = [
    "FaultPanel",
    "GatewayBlindClient",
    "Publisher",
    "Storm",
    "StreamBlindClient",
    "WatchedLongPollClient",
    "crash_server",
    "cut_connections",
    "delivery_report",
    "ids_by_client",
    "kill_clients",
    "proxy_stats",
    "rate_per_bin",
    "reconnect_storm",
    "restart_server",
    "stall_server",
]


def test_all_lists_exactly_the_public_names_sorted() -> None:
    assert helpers.faults.__all__ == EXPECTED == sorted(EXPECTED)
    namespace: dict[str, object] = {}
    exec("from helpers.faults import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(EXPECTED)
    for name in EXPECTED:
        obj = getattr(helpers.faults, name)
        assert obj.__module__.startswith("helpers.faults."), (name, obj.__module__)
        assert obj.__doc__, f"{name} has no docstring"


def test_the_fault_panel_is_a_panel() -> None:
    assert issubclass(FaultPanel, PanelBase)
    assert helpers.faults.FaultPanel is FaultPanel
    assert Action("12:00:00", "restarted").text == "restarted"
