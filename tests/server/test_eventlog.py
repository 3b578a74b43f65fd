"""servers/eventlog.py: the in-memory event log (ids, retention, 410, subscribers, threads)."""

from __future__ import annotations

import threading
import time

import pytest

from servers.contract import DEFAULT_LIMIT, DEFAULT_MESSAGE, ApiError
from servers.eventlog import EventLog

# --- EventLog ---------------------------------------------------------------------------------


def test_publish_gives_consecutive_ids_timestamps_and_messages() -> None:
    log = EventLog()
    before = time.time()
    events = [log.publish(f"m{i}") for i in range(5)]
    assert [e["id"] for e in events] == [1, 2, 3, 4, 5]
    assert [e["message"] for e in events] == ["m0", "m1", "m2", "m3", "m4"]
    assert all(before <= e["timestamp"] <= time.time() for e in events)
    assert log.publish()["message"] == DEFAULT_MESSAGE
    assert log.last_id == 6


def test_empty_log_reports_zero_ids_and_answers_empty() -> None:
    log = EventLog()
    assert (log.last_id, log.oldest_id) == (0, 0)
    assert log.since(0) == []
    assert log.since(12) == []  # a cursor from another stream is not an error


def test_since_returns_newer_events_oldest_first_up_to_limit() -> None:
    log = EventLog()
    for i in range(10):
        log.publish(str(i))
    assert [e["id"] for e in log.since(0)] == list(range(1, 11))
    assert [e["id"] for e in log.since(7)] == [8, 9, 10]
    assert [e["id"] for e in log.since(2, limit=3)] == [3, 4, 5]
    assert log.since(10) == []
    assert log.since(1000) == []


def test_since_defaults_to_limit_100() -> None:
    log = EventLog()
    for _ in range(DEFAULT_LIMIT + 20):
        log.publish()
    assert len(log.since(0)) == DEFAULT_LIMIT


@pytest.mark.parametrize("retention", [1, 5, 10, 37])
def test_retention_keeps_exactly_the_newest_events(retention: int) -> None:
    log = EventLog(retention)
    for _ in range(1000):
        log.publish()
    oldest = 1000 - retention + 1
    assert log.oldest_id == oldest
    kept = log.since(oldest - 1, limit=1000)
    assert [e["id"] for e in kept] == list(range(oldest, 1001))
    middle = oldest - 1 + retention // 2
    assert [e["id"] for e in log.since(middle, limit=1000)] == list(range(middle + 1, 1001))


def test_cursor_older_than_retention_is_gone_with_oldest_id() -> None:
    log = EventLog(retention=5)
    for _ in range(20):
        log.publish()
    with pytest.raises(ApiError) as raised:
        log.since(0)
    error = raised.value
    assert error.status == 410
    assert error.body()["error"] == "gone"
    assert error.body()["oldest_id"] == 16
    assert "last_event_id=15" in error.detail
    with pytest.raises(ApiError):
        log.since(14)
    assert [e["id"] for e in log.since(15)] == [16, 17, 18, 19, 20]


def test_subscribers_hear_every_publish() -> None:
    log = EventLog()
    heard: list[int] = []
    log.subscribe(lambda event: heard.append(event["id"]))
    log.publish()
    log.publish()
    assert heard == [1, 2]


def test_each_log_has_its_own_stream() -> None:
    assert EventLog().stream != EventLog().stream


def test_concurrent_publishers_never_share_or_skip_an_id() -> None:
    log = EventLog(retention=100_000)

    def publish_many() -> None:
        for _ in range(500):
            log.publish()

    threads = [threading.Thread(target=publish_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e["id"] for e in log.since(0, limit=10_000)] == list(range(1, 2001))


def test_retention_must_be_positive() -> None:
    with pytest.raises(ValueError):
        EventLog(0)
