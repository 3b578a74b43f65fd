"""helpers.compare.table: the text and HTML tables read a result's named fields (no servers)."""

from __future__ import annotations

from compare_fakes import fake_results, fake_row

from helpers.compare import table
from helpers.compare.cli import lost_lines
from helpers.compare.results import LaneResult
from helpers.compare.table import best_cells, table_html, table_text


def test_best_cells_pick_the_right_end_and_keep_ties() -> None:
    rows = [fake_row("short", requests_per_event=5.0, delivered_pct=90.0),
            fake_row("naive", requests_per_event=1.25),
            fake_row("asyncio", requests_per_event=1.25, latency_ms={"p50": 2.0, "p95": None})]
    best = best_cells([LaneResult.from_json(row) for row in rows])
    assert best["req/event"] == {"naive", "asyncio"}
    assert best["delivered %"] == {"naive", "asyncio"}
    assert best["p50 ms"] == {"asyncio"}
    assert best["p95 ms"] == {"short", "naive"}  # a lane without a value does not compete


def test_single_threaded_stats_are_marked_and_not_ranked() -> None:
    rows = [fake_row("naive", server_threads_max=7),
            fake_row("naive-single", server_threads_max=1),
            fake_row("asyncio", server_threads_max=2)]
    assert best_cells([LaneResult.from_json(row) for row in rows])["threads"] == {"asyncio"}
    text = table_text(fake_results(*rows))
    assert "1†" in text and "† naive-single" in text


def test_text_and_html_tables_show_every_lane_and_mark_the_best() -> None:
    results = fake_results(fake_row("short", empty_pct=80.0), fake_row("asyncio"))
    text = table_text(results)
    assert text.splitlines()[1].split()[:3] == ["lane", "req/s", "req/event"]
    assert "short" in text and "asyncio" in text and "20.0*" in text
    assert "Publish skew" in text and "Load generator" in text
    page = table_html(results)
    assert page.count("<tr>") == 3 and table.BEST_STYLE in page


def test_a_lane_with_problems_gets_a_line_that_names_it() -> None:
    results = fake_results(fake_row("naive-single", errors=2, last_error="timeout", dropped=3),
                           fake_row("asyncio", missing=1, lost=1))
    text = table_text(results)
    assert "naive-single: 2 client errors (last: timeout); 3 of 4 events never published" in text
    assert "asyncio: LOST or duplicated events: 1 missing" in text
    assert lost_lines(results) == ["FAIL: lane asyncio lost or duplicated events: 1 missing, "
                                   "0 duplicated, 0 gone (410)."]
