"""The panel's buttons and its methods are one code path, and it never prints."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from helpers import Panel, Server, launch

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with launch("asyncio", hold=5) as running:
        yield running


def test_button_click_and_method_publish_through_the_same_path(server: Server) -> None:
    panel = Panel(server, "long", hold=5)
    try:
        before = server.stats()["last_event_id"]
        panel.trigger_button.click()
        panel.trigger()
        assert server.stats()["last_event_id"] == before + 2
        assert panel.summary()["triggered"] == 2
    finally:
        panel.close()


def test_run_measures_and_updates_the_widgets(server: Server,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    panel = Panel(server, "long", hold=5)
    try:
        summary = panel.run(seconds=2, rate=5)
        assert summary["events"] == summary["triggered"] > 0
        assert summary["duplicates"] == summary["missing"] == 0
        assert summary["latency_ms_p95"] < 200
        assert f"<b>{summary['events']:,}</b>" in panel.counters.value
        assert bytes(panel.plot.value).startswith(b"\x89PNG")
        assert not panel.experiment.running
        assert panel.start_button.disabled is False
    finally:
        panel.close()
    assert capsys.readouterr().out == ""


def test_start_stop_buttons_drive_the_clients(server: Server) -> None:
    panel = Panel(server, "short", interval=0.2)
    try:
        panel.start_button.click()
        assert panel.experiment.running and panel.start_button.disabled
        panel.stop_button.click()
        assert not panel.experiment.running and panel.stop_button.disabled
        assert panel.summary()["requests"] >= 1
        panel.reset_button.click()
        assert panel.summary()["requests"] == 0
        assert math.isinf(panel.summary()["requests_per_event"])
    finally:
        panel.close()


def test_rate_slider_sets_the_auto_trigger_rate(server: Server) -> None:
    panel = Panel(server, "long", hold=5)
    try:
        panel.rate_slider.value = 2.5
        assert panel.experiment.settings.rate == 2.5
    finally:
        panel.close()
