"""helpers/metrics.py: percentiles, duplicate and missing ids, requests per event, reset()."""

from __future__ import annotations

import math
import threading

import pytest

from helpers import Metrics
from helpers.metrics import percentile
from servers.contract import Event


def events(*ids: int, timestamp: float = 100.0) -> list[Event]:
    return [{"id": i, "timestamp": timestamp, "message": ""} for i in ids]


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([1.0, 2.0, 3.0, 4.0], 25, 1.75),
        ([10.0, 20.0, 30.0], 50, 20.0),
        ([10.0, 20.0, 30.0], 75, 25.0),
        ([7.0], 99, 7.0),
        ([float(v) for v in range(101)], 95, 95.0),
        ([float(v) for v in range(1, 11)], 99, 9.91),
    ],
)
def test_percentile_interpolates_linearly(values: list[float], q: float,
                                          expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 50))


def test_latency_is_receive_time_minus_event_timestamp() -> None:
    metrics = Metrics()
    metrics.start_client("a", 0)
    for i, latency_s in enumerate([0.010, 0.020, 0.030, 0.040, 0.100], start=1):
        metrics.record_events("a", events(i, timestamp=1000.0), 1000.0 + latency_s)
    summary = metrics.summary()
    assert summary["latency_ms_p50"] == pytest.approx(30.0)
    assert summary["latency_ms_p95"] == pytest.approx(88.0)  # 40 + 0.8 * (100 - 40)
    assert summary["latency_ms_p99"] == pytest.approx(97.6)
    assert summary["latency_ms_max"] == pytest.approx(100.0)
    assert summary["latency_ms_mean"] == pytest.approx(40.0)
    assert [round(ms, 6) for _, ms in metrics.latencies_ms()] == [10.0, 20.0, 30.0, 40.0, 100.0]
    assert [ms for _, ms in metrics.latencies_ms(since=1000.035)] == [pytest.approx(40.0),
                                                                       pytest.approx(100.0)]


def test_duplicates_and_missing_ids_are_counted_per_client() -> None:
    metrics = Metrics()
    metrics.start_client("a", 0)
    metrics.start_client("b", 0)
    metrics.record_events("a", events(1, 2, 3), 101.0)
    metrics.record_events("a", events(3, 4), 101.0)  # 3 again
    metrics.record_events("a", events(2, 7), 101.0)  # 2 again; 5 and 6 never came
    metrics.record_events("b", events(1, 2, 3, 4), 101.0)  # b's own order is fine
    summary = metrics.summary()
    assert summary["duplicates"] == 2
    assert summary["missing"] == 2
    assert summary["events"] == 5 + 4  # duplicates are not deliveries


def test_a_hole_before_the_first_event_counts_as_missing() -> None:
    metrics = Metrics()
    metrics.start_client("late", 5)
    metrics.record_events("late", events(9), 101.0)
    assert metrics.missing == 3  # 6, 7 and 8


def test_gaps_reported_by_410_are_not_missing() -> None:
    metrics = Metrics()
    metrics.start_client("a", 2)
    metrics.record_gap("a", 15)
    metrics.record_events("a", events(16, 17), 101.0)
    assert (metrics.gaps_reported, metrics.missing, metrics.duplicates) == (13, 0, 0)


def test_a_stream_reset_starts_the_ids_over() -> None:
    metrics = Metrics()
    metrics.start_client("a", 0)
    metrics.record_events("a", events(1, 2, 3), 101.0)
    metrics.record_stream_reset("a")
    metrics.record_events("a", events(1, 2), 101.0)
    assert (metrics.stream_resets, metrics.duplicates, metrics.missing) == (1, 0, 0)


def test_requests_per_event_and_empty_share() -> None:
    metrics = Metrics()
    assert metrics.summary()["requests_per_event"] == math.inf
    metrics.start_client("a", 0)
    for _ in range(6):
        metrics.count_request()
    for _ in range(3):
        metrics.count_empty()
    metrics.record_events("a", events(1, 2), 101.0)
    metrics.record_events("a", events(3), 101.0)
    summary = metrics.summary()
    assert summary["requests_per_event"] == pytest.approx(2.0)
    assert summary["empty_pct"] == pytest.approx(50.0)
    assert summary["requests"] == 6 and summary["empty_responses"] == 3
    assert summary["requests_per_s"] > 0


def test_errors_keep_the_last_message() -> None:
    metrics = Metrics()
    metrics.record_error("first")
    metrics.record_error("second")
    assert (metrics.summary()["errors"], metrics.summary()["last_error"]) == (2, "second")


def test_reset_forgets_everything() -> None:
    metrics = Metrics()
    metrics.start_client("a", 0)
    metrics.count_request()
    metrics.count_empty()
    metrics.record_error("boom")
    metrics.record_events("a", events(1, 3, 3), 101.0)
    metrics.record_gap("a", 10)
    metrics.record_stream_reset("a")
    metrics.reset()
    summary = metrics.summary()
    for key in ("requests", "empty_responses", "events", "duplicates", "missing",
                "gaps_reported", "stream_resets", "errors"):
        assert summary[key] == 0, key
    assert summary["last_error"] is None
    assert math.isnan(summary["latency_ms_p50"])
    assert metrics.latencies_ms() == []
    metrics.record_events("a", events(1), 101.0)  # the old client's last id is forgotten too
    assert metrics.duplicates == 0


def test_one_recorder_is_safe_to_share_between_threads() -> None:
    metrics = Metrics()

    def client(name: str) -> None:
        metrics.start_client(name, 0)
        for i in range(1, 501):
            metrics.count_request()
            metrics.record_events(name, events(i), 101.0)

    threads = [threading.Thread(target=client, args=(f"c{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    summary = metrics.summary()
    assert (summary["requests"], summary["events"]) == (2000, 2000)
    assert (summary["duplicates"], summary["missing"]) == (0, 0)
