"""API.md's endpoints on every server: the same requests get the same answers.

Each test runs against each app in process (`api`: Flask, FastAPI, and FastAPI's raw-ASGI lean
long poll), and the `live` one against each real server. What only one server does (the naive
sleep loop and threading; the asyncio wake-up and disconnect release) is tested in
test_flask_server.py and test_fastapi_server.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
import requests

from helpers import Server
from servers.contract import DEFAULT_MESSAGE

if TYPE_CHECKING:
    from conftest import InProcessApi

#: The name each app reports in /health and /stats.
SERVER_NAMES = {"flask": "flask_server", "fastapi": "fastapi_server", "lean": "fastapi_server"}
STATS_KEYS = {
    "server", "stream", "requests", "empty_responses", "events_published", "last_event_id",
    "oldest_event_id", "waiting", "peak_waiting", "threads", "rss_bytes", "uptime_s",
}


def ids(events: list[dict[str, Any]]) -> list[int]:
    return [event["id"] for event in events]


# --- endpoints, in process --------------------------------------------------------------------


def test_health(api: InProcessApi) -> None:
    reply = api.get("/health")
    assert reply.status == 200
    assert reply.json() == {"status": "ok", "server": SERVER_NAMES[api.kind],
                            "stream": api.log.stream, "pid": os.getpid()}
    assert reply.headers["X-Served-By"] == str(os.getpid())  # in process: this pid


@pytest.mark.parametrize(
    ("send", "message"),
    [
        (lambda api: api.trigger("from the body"), "from the body"),
        (lambda api: api.request("POST", "/trigger_event", params={"message": "from the query"}),
         "from the query"),
        (lambda api: api.request("POST", "/trigger_event"), DEFAULT_MESSAGE),
        (lambda api: api.request("POST", "/trigger_event", json_body={}), DEFAULT_MESSAGE),
    ],
    ids=["json-body", "query", "neither", "empty-object"],
)
def test_trigger_event_publishes_and_answers_201(
        api: InProcessApi, send: Callable[[InProcessApi], Any], message: str) -> None:
    before = time.time()
    reply = send(api)
    assert reply.status == 201
    body = reply.json()
    assert body.keys() == {"status", "event"}
    assert body["status"] == "event triggered"
    event = body["event"]
    assert event.keys() == {"id", "timestamp", "message"}
    assert event["id"] == 1
    assert event["message"] == message
    assert isinstance(event["timestamp"], float)
    assert before <= event["timestamp"] <= time.time()
    assert ids(api.get("/events").json()) == [1]


def test_trigger_event_body_wins_over_query(api: InProcessApi) -> None:
    reply = api.request("POST", "/trigger_event", params={"message": "query"},
                        json_body={"message": "body"})
    assert reply.json()["event"]["message"] == "body"


def test_event_ids_are_consecutive(api: InProcessApi) -> None:
    assert ids(api.publish(7)) == [1, 2, 3, 4, 5, 6, 7]


def test_events_answers_newer_events_oldest_first(api: InProcessApi) -> None:
    published = api.publish(5)
    reply = api.get("/events")
    assert reply.status == 200
    assert reply.json() == published
    assert ids(api.get("/events", last_event_id=2).json()) == [3, 4, 5]
    assert api.get("/events", last_event_id=5).json() == []


def test_limit_is_honoured(api: InProcessApi) -> None:
    api.publish(6)
    assert ids(api.get("/events", limit=2).json()) == [1, 2]
    assert ids(api.get("/events", last_event_id=3, limit=2).json()) == [4, 5]
    assert ids(api.get("/poll_for_updates", last_event_id=1, limit=3).json()) == [2, 3, 4]


def test_stream_header_on_every_poll_response(api: InProcessApi) -> None:
    stream = api.get("/health").json()["stream"]
    empty = api.get("/events")
    held = api.get("/poll_for_updates", timeout=0)
    api.publish(1)
    full = api.get("/events")
    polled = api.get("/poll_for_updates")
    assert [r.status for r in (empty, held, full, polled)] == [200, 204, 200, 200]
    for reply in (empty, held, full, polled):
        assert reply.headers["X-Stream-Id"] == stream


def test_poll_answers_at_once_when_events_exist(api: InProcessApi) -> None:
    api.publish(2)
    started = time.monotonic()
    reply = api.get("/poll_for_updates", timeout=10)
    assert time.monotonic() - started < 2
    assert ids(reply.json()) == [1, 2]


def test_poll_answers_204_without_body_when_the_hold_expires(api: InProcessApi) -> None:
    started = time.monotonic()
    reply = api.get("/poll_for_updates", timeout=0.2)
    elapsed = time.monotonic() - started
    assert reply.status == 204
    assert reply.content == b""
    assert 0.19 <= elapsed < 2


def test_poll_from_another_stream_answers_204_at_once(api: InProcessApi) -> None:
    """A cursor from before a restart learns of the new stream now, not a whole hold later."""
    api.publish(2)
    started = time.monotonic()
    reply = api.request("GET", "/poll_for_updates", params={"last_event_id": 50, "timeout": 5},
                        headers={"X-Stream-Id": "a-stream-before-the-restart"})
    assert reply.status == 204 and reply.content == b""
    assert reply.headers["X-Stream-Id"] == api.log.stream
    assert time.monotonic() - started < 1


def test_poll_from_this_stream_is_held_as_usual(api: InProcessApi) -> None:
    started = time.monotonic()
    reply = api.request("GET", "/poll_for_updates", params={"timeout": 0.3},
                        headers={"X-Stream-Id": api.log.stream})
    assert reply.status == 204
    assert time.monotonic() - started >= 0.29


@pytest.mark.parametrize("kind", ["flask", "fastapi", "lean"])
def test_poll_without_timeout_holds_for_the_configured_hold(
        make_api: Callable[..., InProcessApi], kind: str) -> None:
    api = make_api(kind, hold=0.3, check_interval=0.05)  # only the naive server checks
    started = time.monotonic()
    assert api.get("/poll_for_updates").status == 204
    assert 0.29 <= time.monotonic() - started < 2


def test_held_poll_returns_the_event_published_while_it_waits(
        api: InProcessApi, pool: ThreadPoolExecutor, waiter: Callable[..., None]) -> None:
    held = pool.submit(api.get, "/poll_for_updates", timeout=5)
    waiter(lambda: api.stats()["waiting"] == 1, what="the poll to be held")
    event = api.trigger("wake up").json()["event"]
    reply = held.result(timeout=3)
    assert reply.status == 200
    assert reply.json() == [event]
    stats = api.stats()
    assert (stats["waiting"], stats["peak_waiting"]) == (0, 1)


def test_stats_counts_requests_and_empty_answers(api: InProcessApi) -> None:
    initial = api.stats()
    assert STATS_KEYS <= initial.keys()
    assert initial["requests"] == {"events": 0, "poll_for_updates": 0, "trigger_event": 0}
    api.get("/events")  # 200 []: empty
    api.get("/poll_for_updates", timeout=0.05)  # held, then 204: empty
    api.publish(3)
    api.get("/events")  # not empty
    api.get("/events", last_event_id=3)  # empty
    api.get("/poll_for_updates", last_event_id=1)  # not empty
    api.get("/health")  # not counted
    stats = api.stats()
    assert stats["server"] == SERVER_NAMES[api.kind]
    assert stats["stream"] == api.log.stream
    assert stats["requests"] == {"events": 3, "poll_for_updates": 2, "trigger_event": 3}
    assert stats["empty_responses"] == 3
    assert (stats["events_published"], stats["last_event_id"], stats["oldest_event_id"]) == (
        3, 3, 1)
    assert (stats["waiting"], stats["peak_waiting"]) == (0, 1)
    assert stats["threads"] >= 1 and stats["rss_bytes"] > 0 and stats["uptime_s"] >= 0


# --- the real servers -------------------------------------------------------------------------


@pytest.fixture(params=["naive_server", "asyncio_server"], ids=["naive", "asyncio"])
def live_server(request: pytest.FixtureRequest) -> Server:
    """The session's shared naive (Flask) server, then its shared asyncio (FastAPI) one."""
    server: Server = request.getfixturevalue(request.param)
    return server


@pytest.mark.live
def test_live_poll_answers_204_when_its_hold_expires(live_server: Server) -> None:
    last = live_server.stats()["last_event_id"]
    started = time.monotonic()
    reply = requests.get(f"{live_server.url}/poll_for_updates",
                         params={"last_event_id": last, "timeout": 0.3}, timeout=10)
    elapsed = time.monotonic() - started
    assert reply.status_code == 204
    assert reply.content == b""
    assert reply.headers["X-Stream-Id"] == live_server.health()["stream"]
    assert 0.29 <= elapsed < 3
