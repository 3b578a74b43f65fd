"""Fake results for the helpers.compare tests: rows and results shaped like results.json.

A plain module rather than a conftest.py: tests/conftest.py is imported as `conftest` by tests
elsewhere, and a second conftest.py here would take its place in sys.modules.
"""

from __future__ import annotations

from typing import Any

from helpers.compare import LANES, ComparisonResult, Scenario


def fake_row(lane: str, **changes: Any) -> dict[str, Any]:
    """A table row as results.json holds it (nan and inf are None)."""
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


def fake_results_json(*rows: dict[str, Any]) -> dict[str, Any]:
    """A results.json holding `rows`."""
    skew = {"lanes": [r["lane"] for r in rows], "events": 4, "p50": 1.0, "p95": 2.0, "max": 3.0}
    return {"scenario": vars(Scenario()), "lanes": list(rows), "seconds": 5.0,
            "settle_seconds": 1.0, "total_seconds": 6.0, "triggered": 4,
            "publish_skew_ms": {"fanouts": 4, "all": skew, "concurrent": skew},
            "kernel_cpu_pct": 3.0, "kernel_cpu_peak_pct": 5.0,
            "lost": {r["lane"]: r["lost"] for r in rows if r["lost"]},
            "timeline": [{"t": 0.5, "requests": {r["lane"]: 1 for r in rows},
                          "requests_per_s": {r["lane"]: 2.0 for r in rows},
                          "kernel_cpu_pct": 5.0}]}


def fake_results(*rows: dict[str, Any]) -> ComparisonResult:
    """The typed result that results.json with `rows` reads back as."""
    return ComparisonResult.from_json(fake_results_json(*rows))
