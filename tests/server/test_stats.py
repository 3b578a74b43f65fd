"""servers/stats.py: the counters behind /stats."""

from __future__ import annotations

import pytest

from servers.eventlog import EventLog
from servers.stats import Stats, rss_bytes

STATS_KEYS = {
    "server", "stream", "requests", "empty_responses", "events_published", "last_event_id",
    "oldest_event_id", "waiting", "peak_waiting", "threads", "rss_bytes", "uptime_s",
}


# --- Stats ------------------------------------------------------------------------------------


def test_stats_snapshot_counts() -> None:
    log = EventLog(retention=3)
    stats = Stats("demo", log)
    for _ in range(5):
        log.publish()
    stats.count_request("events")
    stats.count_request("events")
    stats.count_request("poll_for_updates")
    stats.count_empty()
    stats.wait_started()
    stats.wait_started()
    stats.wait_ended()
    snap = stats.snapshot()
    assert STATS_KEYS <= snap.keys()
    assert snap["server"] == "demo"
    assert snap["stream"] == log.stream
    assert snap["requests"] == {"events": 2, "poll_for_updates": 1, "trigger_event": 0}
    assert snap["empty_responses"] == 1
    assert (snap["events_published"], snap["last_event_id"], snap["oldest_event_id"]) == (5, 5, 3)
    assert (snap["waiting"], snap["peak_waiting"]) == (1, 2)
    assert snap["threads"] >= 1
    assert snap["rss_bytes"] > 1_000_000
    assert snap["uptime_s"] >= 0


def test_stats_counts_connections_and_reports_its_limit_and_settings() -> None:
    stats = Stats("demo", EventLog(), max_waiting=7, settings={"threaded": False})
    for _ in range(3):
        stats.count_connection()
    snap = stats.snapshot()
    assert (snap["connections"], snap["max_waiting"], snap["threaded"]) == (3, 7, False)


def test_a_poll_beyond_max_waiting_is_refused_with_503() -> None:
    from servers.contract import ApiError

    stats = Stats("demo", EventLog(), max_waiting=2)
    stats.wait_started()
    stats.wait_started()
    with pytest.raises(ApiError) as refused:
        stats.wait_started()
    assert refused.value.status == 503 and refused.value.headers["Retry-After"] == "2"
    assert stats.snapshot()["waiting"] == 2
    stats.wait_ended()
    stats.wait_started()  # room again
    with pytest.raises(ApiError):
        stats.wait_started(limit=1)  # a limit given to the call wins


def test_rss_bytes_is_this_process_resident_memory() -> None:
    assert 1_000_000 < rss_bytes() < 100 * 2**30
