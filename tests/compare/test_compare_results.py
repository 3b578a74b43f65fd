"""helpers.compare.results: the typed records that the table, the figures and results.json read."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from compare_fakes import fake_results_json, fake_row

from helpers.compare.results import (
    ComparisonResult,
    LaneResult,
    LatencySpread,
    Skew,
    Spread,
    TailSpread,
    jsonable,
)
from helpers.compare.table import COLUMNS, table_text

#: The keys of one lane in results.json, as they were before the results became records.
ROW_KEYS = {
    "lane", "title", "server", "strategy", "threaded", "clients", "triggered", "requests",
    "requests_per_s", "deliveries", "expected_deliveries", "requests_per_event", "empty_pct",
    "delivered_pct", "latency_ms", "latency_own_ms", "published", "dropped", "publish_errors",
    "last_publish_error", "publish_lag_ms", "stats_age_s", "server_threads", "server_rss_bytes",
    "server_waiting", "server_threads_max", "server_rss_bytes_max", "server_waiting_max",
    "server_cpu_pct", "missing", "duplicates", "gaps_reported", "stream_resets", "errors",
    "last_error", "lost",
}
RESULT_KEYS = {"scenario", "lanes", "seconds", "settle_seconds", "total_seconds", "triggered",
               "publish_skew_ms", "kernel_cpu_pct", "kernel_cpu_peak_pct", "timeline", "lost"}


def test_results_become_strict_json() -> None:
    value = jsonable({"a": math.nan, "b": [math.inf, 1.5], "c": {"d": -math.inf}, "e": 3})
    assert value == {"a": None, "b": [None, 1.5], "c": {"d": None}, "e": 3}
    json.dumps(value, allow_nan=False)


def test_spreads_are_percentiles_of_their_values_and_nan_when_empty() -> None:
    assert Spread.of([3.0, 1.0, 2.0]).max == 3.0
    latency = LatencySpread.of([10.0] * 99 + [1000.0])
    assert (latency.p50, latency.p95, latency.max) == (10.0, 10.0, 1000.0)
    assert latency.mean == pytest.approx(19.9) and 10.0 < latency.p99 < 1000.0
    assert math.isnan(TailSpread.of([]).p99) and math.isnan(TailSpread.of([]).max)
    skew = Skew.of([1.0, 5.0], lanes=("short", "asyncio"), events=2)
    assert skew.lanes == ("short", "asyncio") and skew.events == 2 and skew.max == 5.0


def test_results_json_reads_back_as_the_same_records() -> None:
    written = fake_results_json(fake_row("short", requests_per_event=None, stats_age_s=None),
                                fake_row("asyncio", missing=1, lost=1))
    results = ComparisonResult.from_json(json.loads(json.dumps(written)))
    assert results.to_json() == written  # every key, nested ones and derived ones included
    assert set(written) == RESULT_KEYS and set(written["lanes"][0]) == ROW_KEYS
    short, asyncio = results.lanes
    assert math.isinf(short.requests_per_event) is False and math.isnan(short.requests_per_event)
    assert asyncio.lost == 1 and results.lost == {"asyncio": 1}
    assert isinstance(asyncio.latency_ms, LatencySpread) and asyncio.latency_ms.p95 == 9.0
    assert results.publish_skew_ms.concurrent.lanes == ("short", "asyncio")
    assert results.timeline[0].requests_per_s == {"short": 2.0, "asyncio": 2.0}
    assert results.kernel_cpu_peak_pct == 5.0
    assert ComparisonResult.from_json(results.to_json()) == results


def test_indexing_a_result_reads_its_json_form() -> None:
    results = ComparisonResult.from_json(fake_results_json(fake_row("naive")))
    row = results.lane("naive")
    results = replace(results, lanes=(replace(row, latency_ms=LatencySpread()),))
    assert results["lanes"][0]["latency_ms"]["p95"] is None  # nan in the record
    assert results["lanes"][0]["requests"] == row.requests == 10
    assert results["triggered"] == results.triggered
    assert "command" not in results.to_json()
    assert replace(results, command=("python", "-m", "helpers.compare"))["command"][0] == "python"


def test_the_table_reads_each_column_from_its_named_field() -> None:
    results = ComparisonResult.from_json(fake_results_json(fake_row("short"),
                                                           fake_row("asyncio")))
    short = results.lane("short")
    distinct = replace(
        short, requests_per_s=101.0, requests_per_event=2.5, empty_pct=33.0,
        latency_ms=LatencySpread(p50=11.0, p95=22.0, p99=44.0, max=50.0, mean=12.0),
        delivered_pct=55.0, publish_lag_ms=Spread(p50=1.0, p95=66.0, max=70.0),
        server_cpu_pct=7.5, server_threads_max=8, server_rss_bytes_max=99_000_000,
        server_waiting_max=9)
    read = {column.header: column.read(distinct) for column in COLUMNS}
    assert read == {"req/s": 101.0, "req/event": 2.5, "empty %": 33.0, "p50 ms": 11.0,
                    "p95 ms": 22.0, "p99 ms": 44.0, "delivered %": 55.0, "pub lag p95": 66.0,
                    "srv CPU %": 7.5, "threads": 8, "RSS MB": 99.0, "held": 9}
    text = table_text(replace(results, lanes=(distinct, results.lane("asyncio"))))
    short_line = next(line for line in text.splitlines() if line.startswith("short"))
    assert short_line.split()[1:4] == ["101", "2.50", "33.0"]


def test_each_delivery_is_for_the_figures_and_stays_out_of_results_json() -> None:
    row = replace(LaneResult.from_json(fake_row("asyncio")), latency_points=((0.5, 3.0),))
    assert not isinstance(row, dict) and row.latency_points == ((0.5, 3.0),)
    assert "latency_points" not in row.to_json() and set(row.to_json()) == ROW_KEYS
