"""helpers.compare.spec: what a lane is, the scenario's knobs and the presets (no servers)."""

from __future__ import annotations

import pytest

from helpers.compare.spec import LANES, PRESETS, LaneSpec, Scenario, find_preset, parse_lanes


def test_lanes_parse_in_display_order_and_unknown_names_say_what_exists() -> None:
    assert parse_lanes("asyncio, short") == ["short", "asyncio"]
    assert parse_lanes(["naive-single"]) == ["naive-single"]
    with pytest.raises(ValueError, match="choose from short, naive, naive-single, asyncio"):
        parse_lanes("short,websocket")


def test_the_four_lanes_are_the_issues_strategies() -> None:
    assert list(LANES) == ["short", "naive", "naive-single", "asyncio"]
    assert (LANES["naive-single"].kind, LANES["naive-single"].threaded) == ("naive", False)
    assert LANES["naive"].threaded is True and LANES["asyncio"].kind == "asyncio"
    options = LANES["naive-single"].launch_options(Scenario(hold=4, check_interval=0.2))
    assert options == {"hold": 4, "threaded": False, "check_interval": 0.2}


@pytest.mark.parametrize("changes", [{"clients": 0}, {"clients": 1001}, {"rate": 51},
                                     {"rate": -1}, {"hold": 0}, {"interval": 0},
                                     {"check_interval": 0}])
def test_scenario_rejects_knobs_out_of_range(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        Scenario(**changes)  # type: ignore[arg-type]


def test_presets_are_the_three_use_cases_and_are_found_by_slug() -> None:
    assert list(PRESETS) == ["sparse notifications", "chat burst", "1000 idle dashboards"]
    assert find_preset("chat-burst") is PRESETS["chat burst"]
    assert find_preset("1000_IDLE_dashboards").scenario.clients == 1000
    for preset in PRESETS.values():
        assert len(preset.description) > 200, preset.name  # a paragraph, not a label
    with pytest.raises(ValueError, match="sparse notifications"):
        find_preset("video call")


def test_each_lane_waits_for_its_own_knob_after_a_publish() -> None:
    scenario = Scenario(interval=0.7, check_interval=0.3)
    waits = {name: spec.delivery_wait(scenario) for name, spec in LANES.items()}
    assert waits == {"short": 0.7, "naive": 0.3, "naive-single": 0.3, "asyncio": 0.0}


def test_a_lane_is_a_kind_from_the_catalogue_and_takes_its_strategy() -> None:
    assert {name: spec.strategy for name, spec in LANES.items()} == {
        "short": "short", "naive": "long", "naive-single": "long", "asyncio": "long"}
    assert LANES["naive"].naive and not LANES["short"].naive and not LANES["asyncio"].naive
    assert LANES["asyncio"].server.module == "servers.fastapi_server"
    with pytest.raises(ValueError, match="choose one of"):
        LaneSpec("x", "x", "websocket", "tab:blue", "-")
    with pytest.raises(ValueError, match="server of events"):
        LaneSpec("x", "x", "proxy", "tab:blue", "-")
    with pytest.raises(ValueError, match="no threaded option"):
        LaneSpec("x", "x", "asyncio", "tab:blue", "-", threaded=True)
