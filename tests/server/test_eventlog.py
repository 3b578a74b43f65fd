"""servers/eventlog.py: the event log, the parameter rules, the counters and the CLI."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from servers.eventlog import (
    DEFAULT_LIMIT,
    DEFAULT_MESSAGE,
    MAX_MESSAGE_CHARS,
    ApiError,
    EventLog,
    ServerConfig,
    Stats,
    bind_socket,
    parse_config,
    parse_message,
    parse_poll_params,
)

STATS_KEYS = {
    "server", "stream", "requests", "empty_responses", "events_published", "last_event_id",
    "oldest_event_id", "waiting", "peak_waiting", "threads", "rss_bytes", "uptime_s",
}


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


# --- parameter rules --------------------------------------------------------------------------


def test_poll_params_defaults() -> None:
    params = parse_poll_params({}, default_timeout=12.5)
    assert (params.last_event_id, params.limit, params.timeout) == (0, 100, 12.5)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"last_event_id": "0"}, (0, 100, 30.0)),
        ({"last_event_id": " 42 "}, (42, 100, 30.0)),
        ({"limit": "1"}, (0, 1, 30.0)),
        ({"limit": "1000"}, (0, 1000, 30.0)),
        ({"timeout": "0"}, (0, 100, 0.0)),
        ({"timeout": "0.25"}, (0, 100, 0.25)),
        ({"timeout": "300"}, (0, 100, 300.0)),
    ],
)
def test_poll_params_accept_the_documented_range(args: dict[str, str],
                                                 expected: tuple[int, int, float]) -> None:
    params = parse_poll_params(args, default_timeout=30.0)
    assert (params.last_event_id, params.limit, params.timeout) == expected


@pytest.mark.parametrize(
    "args",
    [
        {"last_event_id": "abc"},
        {"last_event_id": "1.5"},
        {"last_event_id": ""},
        {"last_event_id": "-1"},
        {"last_event_id": str(2**63)},
        {"last_event_id": "9" * 5000},
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": str(10**9)},
        {"timeout": "-0.1"},
        {"timeout": "300.5"},
        {"timeout": "1e9"},
        {"timeout": "soon"},
        {"timeout": "nan"},
        {"timeout": "NaN"},
        {"timeout": "inf"},
        {"timeout": "-inf"},
    ],
)
def test_poll_params_reject_with_400(args: dict[str, str]) -> None:
    with pytest.raises(ApiError) as raised:
        parse_poll_params(args, default_timeout=30.0)
    assert raised.value.status == 400
    assert raised.value.code == "bad_parameter"
    name = next(iter(args))
    assert raised.value.detail.startswith(f"{name}=")


def test_message_from_body_then_query_then_default() -> None:
    assert parse_message(b'{"message": "body"}', {"message": "query"}) == "body"
    assert parse_message(b"", {"message": "query"}) == "query"
    assert parse_message(b"{}", {"message": "query"}) == "query"
    assert parse_message(b"  ", {}) == DEFAULT_MESSAGE
    assert parse_message(b'{"message": ""}', {}) == ""
    assert parse_message('{"message": "héllo ✓"}'.encode(), {}) == "héllo ✓"
    assert parse_message(b'{"message": "' + b"x" * MAX_MESSAGE_CHARS + b'"}', {}) == (
        "x" * MAX_MESSAGE_CHARS
    )


@pytest.mark.parametrize(
    ("body", "query", "status", "code"),
    [
        (b"{not json", {}, 400, "malformed_json"),
        (b"\xff\xfe\x00", {}, 400, "malformed_json"),
        (b"[" * 100_000 + b"]" * 100_000, {}, 400, "malformed_json"),  # too deep to parse
        (b'["hello"]', {}, 422, "bad_body"),
        (b'"hello"', {}, 422, "bad_body"),
        (b'{"message": 5}', {}, 422, "bad_parameter"),
        (b'{"message": ["a"]}', {}, 422, "bad_parameter"),
        (b'{"message": "' + b"x" * 4097 + b'"}', {}, 413, "message_too_long"),
        (b"", {"message": "x" * 4097}, 413, "message_too_long"),
    ],
)
def test_bad_messages_are_refused(body: bytes, query: dict[str, str], status: int,
                                  code: str) -> None:
    with pytest.raises(ApiError) as raised:
        parse_message(body, query)
    assert (raised.value.status, raised.value.code) == (status, code)
    assert raised.value.detail


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


# --- configuration and start-up ---------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [{"hold": -1}, {"hold": 301}, {"retention": 0}, {"check_interval": 0},
     {"generate_every": 0}],
)
def test_server_config_validates_once(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ServerConfig(**bad)  # type: ignore[arg-type]


def test_server_config_defaults_follow_api_md() -> None:
    config = ServerConfig()
    assert (config.host, config.port, config.hold) == ("127.0.0.1", 0, 30.0)


def test_parse_config_reads_flags() -> None:
    config = parse_config("flask_server", ["--port", "0", "--hold", "2.5", "--single-threaded",
                                           "--check-interval", "0.1", "--retention", "7"],
                          flask=True)
    assert (config.hold, config.threaded, config.check_interval, config.retention) == (
        2.5, False, 0.1, 7)
    assert parse_config("flask_server", [], flask=True).threaded is True


def test_parse_config_refuses_flask_flags_for_fastapi(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config("fastapi_server", ["--single-threaded"])
    assert "unrecognized arguments" in capsys.readouterr().err


def test_parse_config_explains_a_bad_value(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config("fastapi_server", ["--hold", "-3"])
    assert "hold must be from 0 to 300" in capsys.readouterr().err


def test_bind_socket_picks_a_free_loopback_port() -> None:
    sock = bind_socket("127.0.0.1", 0)
    try:
        host, port = sock.getsockname()
        assert host == "127.0.0.1"
        assert port > 0
    finally:
        sock.close()


def test_bind_socket_says_the_port_is_in_use() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(SystemExit) as raised:
            bind_socket("127.0.0.1", port)
        assert f"Port {port} is in use" in str(raised.value)
    finally:
        taken.close()

