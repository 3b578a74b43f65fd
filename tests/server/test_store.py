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
from servers.contract import ApiError
from servers.eventlog import EventLog
from servers.startup import ServerConfig
from servers.store import SqliteEventLog, StoreChoice, open_log

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
    log = open_log(StoreChoice.parse(store), 10)
    assert type(log) is EventLog
    assert StoreChoice() == StoreChoice.parse(store) and str(StoreChoice()) == "memory"


@pytest.mark.parametrize("store", ["sqlite:", "redis:localhost", "events.db", "sqlite"])
def test_a_store_that_is_not_understood_says_what_is(store: str) -> None:
    with pytest.raises(ValueError, match="sqlite:PATH"):
        open_log(StoreChoice.parse(store), 10)


def test_a_sqlite_choice_opens_a_durable_log_at_its_path(tmp_path: Path) -> None:
    choice = StoreChoice.parse(f"sqlite:{tmp_path / 'events.db'}")
    assert (choice.kind, choice.path) == ("sqlite", str(tmp_path / "events.db"))
    assert str(choice) == f"sqlite:{tmp_path / 'events.db'}"
    log = open_log(choice, 10)
    assert isinstance(log, SqliteEventLog)
    log.close()
    assert (tmp_path / "events.db").exists()


@pytest.mark.parametrize(("kind", "path"), [("redis", "x"), ("sqlite", ""), ("memory", "x")])
def test_a_store_choice_is_checked_when_it_is_made(kind: str, path: str) -> None:
    with pytest.raises(ValueError):
        StoreChoice(kind, path)  # type: ignore[arg-type]


@pytest.mark.parametrize("store", ["sqlite:", "redis:localhost", "events.db"])
def test_the_config_refuses_a_store_it_does_not_understand(store: str) -> None:
    with pytest.raises(ValueError, match="use memory or sqlite:PATH"):
        ServerConfig(store=store)


def test_the_command_line_explains_a_bad_store(capsys: pytest.CaptureFixture[str]) -> None:
    from servers.startup import parse_config

    with pytest.raises(SystemExit) as exited:
        parse_config("fastapi_server", ["--store", "redis:localhost"])
    assert exited.value.code == 2  # argparse's usage error, not a traceback
    err = capsys.readouterr().err
    assert "--store 'redis:localhost' is not understood; use memory or sqlite:PATH" in err
    assert parse_config("fastapi_server", []).store_choice == StoreChoice()


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
    assert ServerConfig(store="sqlite:/tmp/x.db").store_choice == StoreChoice("sqlite", "/tmp/x.db")


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
