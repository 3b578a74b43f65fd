"""helpers.compare.cli: `python -m helpers.compare`, with a stand-in engine and for real."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from compare_fakes import fake_results, fake_row

from helpers.compare import LANES, ComparisonResult, Scenario, cli
from helpers.compare.cli import main, parse_args

PROJECT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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
        self.triggered = 0

    def __enter__(self) -> _FakeLab:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def run(self, seconds: float, progress: Any = None) -> ComparisonResult:
        progress(1.0)
        return fake_results(*[fake_row(n, missing=1, lost=1) if n == "naive" else fake_row(n)
                              for n in self.lanes])

    def recent_kernel_cpu_pct(self) -> float:
        return 1.0


def test_main_exits_1_and_names_the_lane_that_lost_an_event(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "Comparison", _FakeLab)
    assert main(["--lanes", "naive,asyncio", "--duration", "1", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL: lane naive lost or duplicated events: 1 missing" in out
    assert (tmp_path / "report.png").read_bytes().startswith(PNG_MAGIC)
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["lanes"][0]["lane"] == "naive"
    assert written["command"][:3] == ["python", "-m", "helpers.compare"]


def _run(*code_or_args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *code_or_args], cwd=PROJECT, capture_output=True,
                          text=True, timeout=timeout)


def test_the_cli_and_the_engine_import_without_ipywidgets() -> None:
    done = _run("-c", "import sys, helpers.compare.cli, helpers.compare; "
                      "from helpers.compare import Comparison, table_text, report_figure; "
                      "print('ipywidgets' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False", "importing the engine imported ipywidgets"


def test_help_names_every_option_and_exits_0() -> None:
    done = _run("-m", "helpers.compare", "--help")
    assert done.returncode == 0, done.stderr
    for option in ("--lanes", "--preset", "--clients", "--rate", "--duration", "--interval",
                   "--hold", "--check-interval", "--out"):
        assert option in done.stdout, option


# --- live: real servers ---------------------------------------------------------------------


@pytest.mark.serial
@pytest.mark.live
def test_cli_runs_every_lane_and_writes_results_and_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    started = time.monotonic()
    done = _run("-m", "helpers.compare", "--duration", "5", "--clients", "2",
                "--rate", "2", "--interval", "0.5", "--hold", "2", "--check-interval", "0.25",
                "--out", str(out))
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
    assert ComparisonResult.from_json(results).to_json() == results  # the file reads back
