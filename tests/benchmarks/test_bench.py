"""bench/: Nchan's cursor protocol, the report, and a tiny live run.

The load client the benchmark shares with notebook 05 is tested in tests/scaling/.

`make bench` itself takes minutes and is not part of `make test`; these tests check its parts
quickly, so that a broken benchmark is found before someone waits ten minutes for it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from service_check import skip_or_fail_in_ci

from bench import report, scenarios
from bench.nchan import NchanCursor, NchanPeer, find_nchan
from helpers import Server
from helpers.loadclient import Reply
from helpers.scaling.fanout import measure_fan_out
from helpers.scaling.peers import KitPeer

T = TypeVar("T")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


# --- Nchan's cursor protocol (the kit's is tested with the load client, tests/scaling) ---


def test_nchan_cursor_speaks_if_modified_since_and_if_none_match() -> None:
    cursor = NchanCursor.from_message_id("1795909679:3")
    raw = cursor.poll(30).decode()
    assert raw.startswith("GET /sub HTTP/1.1\r\n")
    assert "If-Modified-Since: Sat, 28 Nov 2026 23:47:59 GMT\r\n" in raw
    assert "If-None-Match: 3\r\n" in raw
    head = (b"HTTP/1.1 200 OK\r\nLast-Modified: Sat, 28 Nov 2026 23:48:04 GMT\r\nEtag: 0")
    assert cursor.advance(Reply(head, b"hello", 0.0)) == 1
    assert (cursor.last_modified, cursor.etag) == ("Sat, 28 Nov 2026 23:48:04 GMT", "0")
    assert cursor.advance(Reply(b"HTTP/1.1 304 Not Modified", b"", 0.0)) == 0


# --- the report ---------------------------------------------------------------------------------


def _fanout(server: str, n: int, max_ms: float, kib: float) -> dict[str, Any]:
    return {"server": server, "n": n, "delivered": n, "p50_ms": max_ms / 2, "p99_ms": max_ms,
            "max_ms": max_ms, "rss_idle_kib": 50_000, "rss_held_kib": 50_000 + n * kib,
            "kib_per_held": kib, "threads_idle": 1, "threads_held": 1, "idle_cpu": 0.0,
            "rounds": [{"server_cpu_s": 0.1, "client_cpu_s": 0.1, "all_held_after_s": 1.0}]}


def test_report_gives_ratios_to_nchan_and_judges_the_targets() -> None:
    results = {
        "environment": {"command": "make bench", "started": "today"},
        "fanout": [_fanout("fastapi", 10_000, 600.0, 27.0),
                   _fanout("fastapi --lean", 10_000, 300.0, 14.0),
                   _fanout("nchan", 10_000, 150.0, 10.0)],
        "latency": [{"server": s, "events": 200, "p50_ms": p, "p99_ms": 2 * p, "max_ms": 3 * p}
                    for s, p in (("fastapi", 0.5), ("fastapi --lean", 0.3), ("nchan", 0.1))],
        "skipped": [{"what": "rpe", "reason": "left out"}],
    }
    text = report.markdown(results)
    assert "| fastapi | 10,000 | 10,000 | 300 | 600 | 600 | 4.0× |" in text
    assert "| fastapi --lean | 10,000 | 10,000 | 150 | 300 | 300 | 2.0× |" in text
    assert "- rpe: left out" in text
    verdicts = {(c["server"], c["target"].split(":")[0]): c["ok"]
                for c in report.targets(results)}
    assert verdicts[("fastapi", "fan-out to 10,000")] is False
    assert verdicts[("fastapi --lean", "fan-out to 10,000")] is True
    assert verdicts[("fastapi", "≤ 25 KiB RSS per held connection")] is False
    assert verdicts[("fastapi --lean", "one subscriber")] is True


def test_report_says_when_a_figure_was_not_measured() -> None:
    checks = report.targets({"fanout": [], "latency": []})
    assert {c["ok"] for c in checks} == {None}
    assert all(c["measured"] == "not measured in this run" for c in checks)


def test_a_missing_nginx_is_explained_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NGINX", "/nonexistent/nginx")
    found = find_nchan()
    assert isinstance(found, str) and "apt-get install nginx libnginx-mod-nchan" in found


# --- live: a tiny run against real servers -------------------------------------------------------


@pytest.mark.live
@pytest.mark.parametrize("lean", [False, True], ids=["fastapi", "lean"])
def test_fan_out_and_latency_on_the_asyncio_server(lean: bool,
                                                    launched: Callable[..., Server]) -> None:
    server = launched("asyncio", hold=30, lean=lean)

    async def measure() -> tuple[dict[str, Any], dict[str, Any]]:
        peer = await KitPeer.attach(server)
        try:
            spread = await measure_fan_out(peer, 50, rounds=2)
            single = await scenarios.delivery_latency(peer, 10)
            return spread, single
        finally:
            await peer.stop()

    spread, single = run(measure())
    assert spread["delivered"] == 50 and len(spread["rounds"]) == 2, spread
    assert spread["threads_held"] == spread["threads_idle"], spread
    assert 0 < spread["p50_ms"] <= spread["max_ms"] < 5_000, spread
    assert single["events"] == 10 and 0 < single["p50_ms"] < 100, single
    assert server.stats()["waiting"] == 0


@pytest.mark.live
def test_nchan_peer_starts_answers_and_stops() -> None:
    found = find_nchan()
    if isinstance(found, str):
        skip_or_fail_in_ci(found)

    async def measure() -> tuple[dict[str, Any], dict[str, Any], NchanPeer]:
        peer = await NchanPeer(*found, hold=30).start()
        try:
            spread = await measure_fan_out(peer, 20, rounds=1)
            single = await scenarios.delivery_latency(peer, 5)
        finally:
            await peer.stop()
        return spread, single, peer

    spread, single, peer = run(measure())
    assert spread["delivered"] == 20 and single["events"] == 5, (spread, single)
    assert peer.process is not None and peer.process.poll() is not None, "nginx still runs"
    assert peer.root is not None and not peer.root.exists(), "its temporary directory is left"


@pytest.mark.live
def test_the_command_line_runs_a_scenario_and_skips_a_missing_nchan(tmp_path: Path) -> None:
    env = {**os.environ, "NGINX": "/nonexistent/nginx"}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "latency", "--servers",
         "fastapi --lean,nchan", "--out", str(tmp_path), "--deadline", "60"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Nchan reference SKIPPED" in done.stderr and "apt-get install" in done.stderr
    written = sorted(tmp_path.glob("bench-*"))
    assert [p.suffix for p in written] == [".json", ".md"], written
    results = json.loads(written[0].read_text())
    assert [r["server"] for r in results["latency"]] == ["fastapi --lean"]
    assert results["latency"][0]["events"] == 30
    assert "## 2 · Delivery latency, one subscriber" in written[1].read_text()


@pytest.mark.live
def test_a_timeout_inside_a_measurement_is_not_blamed_on_its_budget() -> None:
    from bench.runner import Bench, Options, Progress

    async def one_reply_too_slow(peer: Any) -> dict[str, Any]:
        await asyncio.wait_for(asyncio.sleep(5), 0.1)  # one request's own, short timeout
        return {}

    bench = Bench(Options(nchan=False), Progress())
    assert run(bench.measure("fanout", "fastapi --lean", "N=1", 0, 60, one_reply_too_slow)) is None
    [skipped] = bench.results["skipped"]
    assert re.match(r"a wait inside it timed out after \d+ s \(in one_reply_too_slow\)",
                    skipped["reason"]), skipped
    assert "did not finish" not in skipped["reason"], skipped
