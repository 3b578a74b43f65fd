"""helpers.compare.panel: the panel's buttons drive the same engine (live servers)."""

from __future__ import annotations

import time

import pytest

from helpers.compare import PRESETS, ComparePanel, Comparison

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.live
def test_panel_buttons_drive_the_same_engine(capsys: pytest.CaptureFixture[str]) -> None:
    with Comparison(lanes="short,asyncio", clients=2, rate=0, interval=0.3, hold=3) as lab:
        panel = ComparePanel(lab)
        try:
            fanout = lab.trigger(wait=5)
            assert set(fanout.stamps) == {"short", "asyncio"} and fanout.skew_ms() < 1000
            panel.start_button.click()
            assert lab.running and panel.start_button.disabled
            panel.trigger_button.click()
            panel.burst_button.click()
            time.sleep(1.0)
            panel.stop_button.click()
            assert not lab.running and not panel.start_button.disabled
            results = lab.results()
            assert results["triggered"] == 21
            for row in results["lanes"]:
                assert row["deliveries"] == 21 * 2 and row["lost"] == 0, row
            assert "<table" in panel.table.value
            assert bytes(panel.distribution.value).startswith(PNG_MAGIC)

            panel.apply_preset("chat burst")
            assert lab.scenario == PRESETS["chat burst"].scenario
            assert "Burst" in panel.preset_text.value or "burst" in panel.preset_text.value
            panel.configure(clients=2, rate=3, hold=3, interval=0.3)
            assert panel.preset.value != "chat burst" and panel.clients_slider.value == 2
            summary = panel.run(2)
            assert summary["triggered"] >= 1 and bytes(panel.plot.value).startswith(PNG_MAGIC)
            panel.reset_button.click()
            assert lab.results()["triggered"] == 0
        finally:
            panel.close()
    assert capsys.readouterr().out == ""
