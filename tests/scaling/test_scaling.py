"""helpers/scaling/: notebook 05's engine, its public names, and small live sweeps."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import helpers.scaling
from helpers import Server, launch
from helpers.plots import figure_png
from helpers.scaling import (
    BenchResults,
    ScalingExplorer,
    fan_out,
    latest_bench,
    open_file_limit,
    profile_fan_out,
    sweep,
    sweep_figure,
    table,
)

EXPECTED = [
    "FLASK_MAX",
    "SIZES",
    "BenchResults",
    "ScalingExplorer",
    "fan_out",
    "latest_bench",
    "open_file_limit",
    "profile_fan_out",
    "sweep",
    "sweep_figure",
    "table",
]


def test_all_lists_exactly_the_public_names_sorted() -> None:
    assert helpers.scaling.__all__ == sorted(EXPECTED)
    namespace: dict[str, object] = {}
    exec("from helpers.scaling import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(EXPECTED)
    for name in EXPECTED:
        obj = getattr(helpers.scaling, name)
        assert isinstance(obj, int | tuple) or obj.__doc__, f"{name} has no docstring"


def test_open_file_limit_is_raised_to_fit_many_clients() -> None:
    assert open_file_limit() >= 1024


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Server]]:
    with launch("asyncio", hold=30) as asyncio_server, \
            launch("naive", hold=30, check_interval=0.05) as naive_server:
        yield {"asyncio": asyncio_server, "flask (sleep loop)": naive_server}


@pytest.mark.live
def test_a_fan_out_reaches_every_waiting_client(servers: dict[str, Server]) -> None:
    row = fan_out(servers["asyncio"], 20)
    assert (row["n"], row["delivered"], row["kind"]) == (20, 20, "asyncio")
    assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"] < 5_000
    assert row["rss_held_kib"] > 0 and row["threads_held"] >= 1
    assert len(row["rounds"]) == 1


@pytest.mark.live
def test_a_sweep_measures_each_server_at_each_size(servers: dict[str, Server]) -> None:
    said: list[str] = []
    rows = sweep(servers, [20, 1], progress=said.append)
    assert [(r["server"], r["n"]) for r in rows] == [
        ("asyncio", 1), ("asyncio", 20), ("flask (sleep loop)", 1), ("flask (sleep loop)", 20)]
    assert all(r["delivered"] == r["n"] for r in rows)
    assert [r["kind"] for r in rows] == ["asyncio"] * 2 + ["flask"] * 2
    # One thread per held poll on the sleep loop; the asyncio server holds them on one.
    flask_20 = rows[3]
    assert flask_20["threads_held"] >= 20 > rows[1]["threads_held"]
    assert said == ["asyncio: 1 waiting clients", "asyncio: 20 waiting clients",
                    "flask (sleep loop): 1 waiting clients",
                    "flask (sleep loop): 20 waiting clients"]
    text = table(rows)
    assert text.splitlines()[0].split()[:3] == ["server", "clients", "delivered"]
    assert len(text.splitlines()) == 5
    assert figure_png(sweep_figure(rows, "a small sweep")).startswith(b"\x89PNG")


@pytest.mark.live
def test_a_fan_out_that_cannot_fit_says_so(servers: dict[str, Server]) -> None:
    with pytest.raises(ValueError, match="open files"):
        fan_out(servers["asyncio"], 10 ** 9)


@pytest.mark.live
def test_the_explorer_runs_the_same_sweep_and_never_prints(
        servers: dict[str, Server], capsys: pytest.CaptureFixture[str]) -> None:
    explorer = ScalingExplorer({"asyncio": servers["asyncio"]}, max_n=10)
    try:
        rows = explorer.run()
        assert [r["n"] for r in rows] == [1, 10]
        assert bytes(explorer.plot.value).startswith(b"\x89PNG")
        assert "done: 2 measurements" in explorer.status.value
        assert explorer.table() == table(rows)
        assert not explorer.button.disabled
    finally:
        explorer.close()
    assert capsys.readouterr().out == ""


@pytest.mark.live
def test_a_profile_shares_out_the_servers_cpu() -> None:
    profile = profile_fan_out(50)
    assert profile["delivered"] == 50 and profile["max_ms"] > 0
    assert "garbage collector" in profile["cpu"]
    assert sum(profile["python_shares"].values()) == pytest.approx(1.0)


def test_bench_results_are_read_from_the_files_make_bench_writes(tmp_path: Path) -> None:
    assert latest_bench(tmp_path) is None
    run = {"environment": {"command": "make bench"},
           "fanout": [{"server": "fastapi", "n": 10_000, "delivered": 10_000, "max_ms": 40.0}]}
    for stamp in ("20260101-000000", "20260102-000000"):
        (tmp_path / f"bench-{stamp}.json").write_text(json.dumps(run))
    (tmp_path / "bench-20260102-000000.md").write_text("# Polling Lab benchmark\n\n| a |\n")
    found = latest_bench(tmp_path)
    assert isinstance(found, BenchResults)
    assert found.path.name == "bench-20260102-000000.json"
    assert found.environment["command"] == "make bench"
    assert found.fan_out("fastapi", 10_000) == run["fanout"][0]
    assert found.fan_out("nchan", 10_000) is None
    shown = found._repr_markdown_()
    assert "### Polling Lab benchmark" in shown and "| a |" in shown
    older = BenchResults(tmp_path / "bench-20260101-000000.json")
    assert "python -m bench.report" in older.markdown()
