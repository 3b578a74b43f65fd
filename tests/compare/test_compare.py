"""helpers.compare, helpers.lanes and helpers.compare_panel: every strategy side by side."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from helpers.compare import cli as compare
from helpers.compare.cli import best_cells, lost_lines, main, parse_args, table_html, table_text
from helpers.compare.comparison import (
    LANES,
    PRESETS,
    Comparison,
    Scenario,
    _jsonable,
    find_preset,
    parse_lanes,
)
from helpers.compare.panel import ComparePanel

PROJECT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_row(lane: str, **changes: Any) -> dict[str, Any]:
    """A table row shaped like Comparison.rows() (after results(): nan and inf are None)."""
    row: dict[str, Any] = {
        "lane": lane, "title": LANES[lane].title, "server": LANES[lane].kind,
        "strategy": LANES[lane].strategy, "threaded": LANES[lane].threaded, "clients": 2,
        "triggered": 4, "requests": 10, "requests_per_s": 2.0, "deliveries": 8,
        "expected_deliveries": 8, "requests_per_event": 1.25, "empty_pct": 20.0,
        "delivered_pct": 100.0,
        "latency_ms": {"p50": 5.0, "p95": 9.0, "p99": 9.5, "max": 10.0, "mean": 6.0},
        "latency_own_ms": {"p50": 4.0, "p95": 8.0, "p99": 8.5, "max": 9.0},
        "published": 4, "dropped": 0, "publish_errors": 0, "last_publish_error": None,
        "publish_lag_ms": {"p50": 1.0, "p95": 2.0, "max": 2.5}, "stats_age_s": 0.2,
        "server_threads": 3, "server_rss_bytes": 40e6, "server_waiting": 2,
        "server_threads_max": 3, "server_rss_bytes_max": 40e6, "server_waiting_max": 2,
        "server_cpu_pct": 1.0, "missing": 0, "duplicates": 0, "gaps_reported": 0,
        "stream_resets": 0, "errors": 0, "last_error": None, "lost": 0,
    }
    row.update(changes)
    return row


def fake_results(*rows: dict[str, Any]) -> dict[str, Any]:
    skew = {"lanes": [r["lane"] for r in rows], "events": 4, "p50": 1.0, "p95": 2.0, "max": 3.0}
    return {"scenario": vars(Scenario()), "lanes": list(rows), "seconds": 5.0,
            "settle_seconds": 1.0, "total_seconds": 6.0, "triggered": 4,
            "publish_skew_ms": {"fanouts": 4, "all": skew, "concurrent": skew},
            "kernel_cpu_pct": 3.0, "kernel_cpu_peak_pct": 5.0, "timeline": [], "lost": {}}


# --- the engine's rules, without servers --------------------------------------------------


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


def test_results_become_strict_json() -> None:
    value = _jsonable({"a": math.nan, "b": [math.inf, 1.5], "c": {"d": -math.inf}, "e": 3})
    assert value == {"a": None, "b": [None, 1.5], "c": {"d": None}, "e": 3}
    json.dumps(value, allow_nan=False)


# --- the table ----------------------------------------------------------------------------


def test_best_cells_pick_the_right_end_and_keep_ties() -> None:
    rows = [fake_row("short", requests_per_event=5.0, delivered_pct=90.0),
            fake_row("naive", requests_per_event=1.25),
            fake_row("asyncio", requests_per_event=1.25, latency_ms={"p50": 2.0, "p95": None})]
    best = best_cells(rows)
    assert best["req/event"] == {"naive", "asyncio"}
    assert best["delivered %"] == {"naive", "asyncio"}
    assert best["p50 ms"] == {"asyncio"}
    assert best["p95 ms"] == {"short", "naive"}  # a lane without a value does not compete


def test_single_threaded_stats_are_marked_and_not_ranked() -> None:
    rows = [fake_row("naive", server_threads_max=7),
            fake_row("naive-single", server_threads_max=1),
            fake_row("asyncio", server_threads_max=2)]
    assert best_cells(rows)["threads"] == {"asyncio"}
    text = table_text(fake_results(*rows))
    assert "1†" in text and "† naive-single" in text


def test_text_and_html_tables_show_every_lane_and_mark_the_best() -> None:
    results = fake_results(fake_row("short", empty_pct=80.0), fake_row("asyncio"))
    text = table_text(results)
    assert text.splitlines()[1].split()[:3] == ["lane", "req/s", "req/event"]
    assert "short" in text and "asyncio" in text and "20.0*" in text
    assert "Publish skew" in text and "Load generator" in text
    page = table_html(results)
    assert page.count("<tr>") == 3 and compare.BEST_STYLE in page


def test_a_lane_with_problems_gets_a_line_that_names_it() -> None:
    results = fake_results(fake_row("naive-single", errors=2, last_error="timeout", dropped=3),
                           fake_row("asyncio", missing=1, lost=1))
    text = table_text(results)
    assert "naive-single: 2 client errors (last: timeout); 3 of 4 events never published" in text
    assert "asyncio: LOST or duplicated events: 1 missing" in text
    assert lost_lines(results) == ["FAIL: lane asyncio lost or duplicated events: 1 missing, "
                                   "0 duplicated, 0 gone (410)."]


# --- the command line, without servers ------------------------------------------------------


def test_options_override_the_preset_and_the_default_out_is_timestamped() -> None:
    args = parse_args(["--preset", "chat burst", "--clients", "7", "--lanes", "asyncio,short"])
    assert args.scenario == Scenario(clients=7, rate=5.0, interval=1.0, hold=30.0,
                                     check_interval=0.5)
    assert args.lanes == ["short", "asyncio"]
    assert args.out.parent == Path("results") and args.out.name.startswith("compare-")


@pytest.mark.parametrize("argv", [["--lanes", "smoke-signals"], ["--clients", "0"],
                                  ["--preset", "nope"], ["--duration", "0"]])
def test_bad_options_exit_with_a_usage_error(argv: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    assert "error:" in capsys.readouterr().err


class _FakeLab:
    """Stands in for Comparison in main(): one lane that lost an event."""

    def __init__(self, lanes: list[str], scenario: Scenario) -> None:
        self.lanes = {name: None for name in lanes}
        self.scenario = scenario
        self.timeline: list[dict[str, Any]] = []
        self.triggered = 0

    def __enter__(self) -> _FakeLab:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def run(self, seconds: float, progress: Any = None) -> dict[str, Any]:
        progress(1.0)
        return fake_results(*[fake_row(n, missing=1, lost=1) if n == "naive" else fake_row(n)
                              for n in self.lanes])

    def latency_points(self) -> dict[str, list[tuple[float, float]]]:
        return {name: [(0.5, 3.0), (1.5, 4.0)] for name in self.lanes}

    def recent_kernel_cpu_pct(self) -> float:
        return 1.0


def test_main_exits_1_and_names_the_lane_that_lost_an_event(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(compare, "Comparison", _FakeLab)
    assert main(["--lanes", "naive,asyncio", "--duration", "1", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL: lane naive lost or duplicated events: 1 missing" in out
    assert (tmp_path / "report.png").read_bytes().startswith(PNG_MAGIC)
    assert json.loads((tmp_path / "results.json").read_text())["lanes"][0]["lane"] == "naive"


# --- live: real servers ---------------------------------------------------------------------


@pytest.mark.live
def test_cli_runs_every_lane_and_writes_results_and_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "helpers.compare", "--duration", "5", "--clients", "2",
         "--rate", "2", "--interval", "0.5", "--hold", "2", "--check-interval", "0.25",
         "--out", str(out)],
        cwd=PROJECT, capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert took < 30, f"the CLI took {took:.1f} s"
    assert "lane" in done.stdout and "Wrote" in done.stdout and "FAIL" not in done.stdout
    assert "5.0/5 s" in done.stderr  # the progress bar, without a terminal

    results = json.loads((out / "results.json").read_text())
    assert [row["lane"] for row in results["lanes"]] == list(LANES)
    assert results["triggered"] >= 3 and results["lost"] == {}
    for row in results["lanes"]:
        assert row["missing"] == row["duplicates"] == row["lost"] == 0, row
        assert row["requests"] > 0 and row["requests_per_s"] > 0, row
    rows = {row["lane"]: row for row in results["lanes"]}
    for lane in ("short", "naive", "asyncio"):
        assert rows[lane]["delivered_pct"] == 100, rows[lane]
        assert rows[lane]["latency_ms"]["p50"] > 0, rows[lane]
    assert rows["asyncio"]["latency_ms"]["p95"] < rows["short"]["latency_ms"]["p95"]
    assert results["publish_skew_ms"]["concurrent"]["events"] >= 3
    assert results["timeline"] and results["kernel_cpu_pct"] > 0
    assert (out / "report.png").read_bytes().startswith(PNG_MAGIC)


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
