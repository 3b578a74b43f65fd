"""servers/store.py: a durable event log keeps its stream and ids across restarts, so clients
resume with nothing lost or duplicated."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from helpers import LongPollClient, Server, ShortPollClient
from helpers.faults import ids_by_client
from servers.eventlog import ApiError, EventLog, ServerConfig
from servers.store import SqliteEventLog, open_log

if TYPE_CHECKING:
    from conftest import InProcessApi


def test_events_and_stream_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    first = SqliteEventLog(path)
    published = [first.publish(f"m{i}") for i in range(5)]
    stream = first.stream
    first.close()

    second = SqliteEventLog(path)
    assert second.stream == stream
    assert second.since(0) == published
    assert second.publish("after")["id"] == 6
    assert second.last_id == 6 and second.oldest_id == 1
    second.close()


def test_each_new_file_gets_its_own_stream(tmp_path: Path) -> None:
    a, b = SqliteEventLog(tmp_path / "a.db"), SqliteEventLog(tmp_path / "b.db")
    assert a.stream != b.stream
    a.close()
    b.close()


def test_retention_trims_the_file_too(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    log = SqliteEventLog(path, retention=8)
    for i in range(30):
        log.publish(f"m{i}")
    log.close()
    rows = sqlite3.connect(path).execute("SELECT min(id), max(id), count(*) FROM events").fetchone()
    assert rows[1] == 30 and rows[2] <= 8 + 8 // 4, rows  # trimmed in batches of retention/4

    reopened = SqliteEventLog(path, retention=8)
    assert reopened.oldest_id == 23 and reopened.last_id == 30
    with pytest.raises(ApiError) as gone:
        reopened.since(5)
    assert gone.value.status == 410 and gone.value.extra["oldest_id"] == 23
    assert [e["id"] for e in reopened.since(22)] == list(range(23, 31))
    reopened.close()


@pytest.mark.parametrize("store", [None, "memory"])
def test_memory_is_the_default(store: str | None) -> None:
    log = open_log(store, 10)
    assert type(log) is EventLog


@pytest.mark.parametrize("store", ["sqlite:", "redis:localhost", "events.db", "sqlite"])
def test_a_store_that_is_not_understood_says_what_is(store: str) -> None:
    with pytest.raises(ValueError, match="sqlite:PATH"):
        open_log(store, 10)


def test_an_app_reopened_on_the_same_file_continues_its_stream(
        make_api: Callable[..., InProcessApi], tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'events.db'}"
    for kind in ("flask", "fastapi"):
        before = make_api(kind, store=store)
        stream = before.get("/health").json()["stream"]
        count = before.stats()["last_event_id"]
        before.publish(3)
        after = make_api(kind, store=store)
        reply = after.get("/events", last_event_id=count)
        assert reply.headers["X-Stream-Id"] == stream
        assert [e["id"] for e in reply.json()] == [count + 1, count + 2, count + 3]


def test_server_config_accepts_a_store() -> None:
    assert ServerConfig(store="sqlite:/tmp/x.db").store == "sqlite:/tmp/x.db"


@pytest.mark.live
@pytest.mark.parametrize("kind", ["asyncio", "naive"])
def test_clients_resume_across_a_restart_with_nothing_lost_or_repeated(
        kind: str, launched: Callable[..., Server], tmp_path: Path) -> None:
    options = {"check_interval": 0.05} if kind == "naive" else {}
    server = launched(kind, hold=2, store=f"sqlite:{tmp_path / 'events.db'}", **options)
    stream = server.health()["stream"]
    long = LongPollClient(server.url, hold=1, name="long", backoff_cap=0.3)
    short = ShortPollClient(server.url, 0.2, metrics=long.metrics, name="short",
                            backoff_cap=0.3)
    with long, short:
        for i in range(5):
            server.trigger(f"before {i}")
        server.restart()
        assert server.health()["stream"] == stream
        for i in range(5):
            server.trigger(f"after {i}")
        deadline = time.monotonic() + 10
        while min(long.last_event_id, short.last_event_id) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
    summary = long.metrics.summary()
    assert ids_by_client(long.metrics) == {"long": list(range(1, 11)),
                                          "short": list(range(1, 11))}
    assert summary["duplicates"] == summary["missing"] == summary["stream_resets"] == 0
