"""helpers/clients.py: the cursor rules, backoff, and the threaded short- and long-poll clients.

The cursor is fed real responses from in-process apps; the clients run against real servers.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from helpers import (
    LongPollClient,
    Metrics,
    PollError,
    Server,
    ServerUnavailable,
    ShortPollClient,
    backoff_delay,
)
from helpers.clients import Cursor, PollClient
from servers.contract import Event

if TYPE_CHECKING:
    from conftest import InProcessApi, Reply


# --- backoff ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("base", "cap"), [(0.1, 5.0), (0.5, 2.0), (1.0, 60.0)])
def test_backoff_stays_within_full_jitter_window(base: float, cap: float) -> None:
    rng = random.Random(1234)
    for failures in range(1, 16):
        ceiling = min(cap, base * 2 ** (failures - 1))
        draws = [backoff_delay(failures, base, cap, rng) for _ in range(300)]
        assert all(0 <= d <= ceiling for d in draws), (failures, max(draws), ceiling)
        # Full jitter uses the whole window: neither stuck at 0 nor squeezed under the ceiling.
        assert max(draws) > 0.8 * ceiling
        assert min(draws) < 0.2 * ceiling


def test_backoff_grows_until_the_cap() -> None:
    rng = random.Random(7)
    means = [sum(backoff_delay(n, 0.1, 1.0, rng) for _ in range(400)) / 400 for n in (1, 2, 3, 8)]
    assert means[0] < means[1] < means[2] < means[3]
    assert means[3] == pytest.approx(0.5, abs=0.08)  # uniform on [0, cap]


# --- the cursor, fed real responses -----------------------------------------------------------


def feed(cursor: Cursor, reply: Reply) -> list[Event]:
    return cursor.apply(reply.status, reply.headers, reply.json, time.time())


@pytest.fixture
def server_api(make_api: Callable[..., InProcessApi]) -> InProcessApi:
    return make_api("flask", retention=5, hold=0.1, check_interval=0.02)


def test_cursor_moves_past_the_events_it_receives(server_api: InProcessApi) -> None:
    metrics = Metrics()
    cursor = Cursor("c", metrics)
    assert feed(cursor, server_api.get("/events")) == []
    server_api.publish(3)
    events = feed(cursor, server_api.get("/events", last_event_id=cursor.last_event_id))
    assert [e["id"] for e in events] == [1, 2, 3]
    assert cursor.last_event_id == 3
    assert cursor.stream == server_api.log.stream
    assert feed(cursor, server_api.get("/poll_for_updates", last_event_id=3, timeout=0)) == []
    assert cursor.last_event_id == 3
    summary = metrics.summary()
    assert (summary["events"], summary["empty_responses"], summary["missing"]) == (3, 2, 0)


def test_changed_stream_resets_the_cursor(make_api: Callable[..., InProcessApi]) -> None:
    before, after = make_api("flask"), make_api("flask")  # a server, and its restart
    before.publish(4)
    after.publish(2)
    metrics = Metrics()
    cursor = Cursor("c", metrics)
    feed(cursor, before.get("/events"))
    assert cursor.last_event_id == 4
    assert feed(cursor, after.get("/events", last_event_id=4)) == []
    assert cursor.last_event_id == 0
    assert cursor.stream == after.log.stream
    assert metrics.stream_resets == 1
    assert [e["id"] for e in feed(cursor, after.get("/events", last_event_id=0))] == [1, 2]
    assert metrics.summary()["duplicates"] == 0  # ids 1, 2 of the new stream are new


def test_gone_moves_the_cursor_to_oldest_id_and_records_the_gap(
        server_api: InProcessApi) -> None:
    metrics = Metrics()
    cursor = Cursor("c", metrics, last_event_id=2)
    server_api.publish(20)
    assert feed(cursor, server_api.get("/events", last_event_id=2)) == []
    assert cursor.last_event_id == 15  # oldest_id 16, minus one
    assert metrics.gaps_reported == 13  # ids 3..15 are gone
    events = feed(cursor, server_api.get("/events", last_event_id=cursor.last_event_id))
    assert [e["id"] for e in events] == [16, 17, 18, 19, 20]
    assert (metrics.missing, metrics.duplicates) == (0, 0)


def test_bad_request_raises_poll_error_with_the_servers_detail(
        server_api: InProcessApi) -> None:
    reply = server_api.get("/events", limit=0)
    with pytest.raises(PollError) as raised:
        feed(Cursor("c", Metrics()), reply)
    assert raised.value.status == 400
    assert raised.value.code == "bad_parameter"
    assert raised.value.detail == reply.json()["detail"]
    assert "limit" in str(raised.value)


def test_server_error_is_worth_retrying_and_keeps_retry_after() -> None:
    body = {"error": "busy", "detail": "Too many long polls are held; retry soon."}
    with pytest.raises(ServerUnavailable) as raised:
        Cursor("c", Metrics()).apply(503, {"Retry-After": "2"}, lambda: body, time.time())
    assert raised.value.retry_after == 2.0
    assert "retry soon" in str(raised.value)


# --- the clients, against real servers --------------------------------------------------------


class Collector:
    """An on_events callback that keeps every id it hears, in order."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, events: Sequence[Event]) -> None:
        with self._lock:
            self.ids.extend(e["id"] for e in events)


@pytest.mark.live
@pytest.mark.parametrize(
    ("kind", "options"),
    [("asyncio", {}), ("naive", {"check_interval": 0.05})],
    ids=["asyncio", "naive"],
)
def test_every_client_gets_every_event_once_in_order(
        launched: Callable[..., Server], kind: str, options: dict[str, Any],
        waiter: Callable[..., None]) -> None:
    server = launched(kind, hold=5, **options)
    clients: list[PollClient] = []
    collectors: list[Collector] = []
    for make in (lambda **kw: ShortPollClient(server.url, interval=0.05, **kw),
                 lambda **kw: LongPollClient(server.url, hold=5, **kw)):
        collector = Collector()
        clients.append(make(metrics=Metrics(), on_events=collector))
        collectors.append(collector)
    try:
        for client in clients:
            client.start()
        rng = random.Random(300)
        for i in range(300):
            server.trigger(f"event {i + 1}")
            time.sleep(rng.uniform(0, 0.02))
        waiter(lambda: all(c.last_event_id == 300 for c in clients), 10,
               "every client to reach event 300")
    finally:
        for client in clients:
            client.stop()
    for client, collector in zip(clients, collectors, strict=True):
        name = type(client).__name__
        assert collector.ids == list(range(1, 301)), name
        summary = client.metrics.summary()
        assert (summary["events"], summary["duplicates"], summary["missing"]) == (300, 0, 0), name
        assert summary["errors"] == 0, (name, summary["last_error"])
        assert not client.running


@pytest.mark.live
@pytest.mark.parametrize("server_fixture", ["asyncio_server", "naive_server"])
def test_stop_during_a_held_poll_returns_within_a_second(
        request: pytest.FixtureRequest, server_fixture: str, waiter: Callable[..., None]) -> None:
    server: Server = request.getfixturevalue(server_fixture)
    waiting = server.stats()["waiting"]
    client = LongPollClient(server.url, hold=30,
                            last_event_id=server.stats()["last_event_id"]).start()
    try:
        waiter(lambda: server.stats()["waiting"] == waiting + 1, 5, "the poll to be held")
        started = time.monotonic()
        client.stop()
        assert time.monotonic() - started < 1.0
        assert not client.running
        assert client.error is None and client.metrics.errors == 0  # stopping is not an error
    finally:
        client.stop()
    if server_fixture == "asyncio_server":  # the naive server naps on until the hold ends
        waiter(lambda: server.stats()["waiting"] == waiting, 1.5,
               "the server to release the poll")


@pytest.mark.live
def test_stop_right_after_start_leaves_no_poll_held(asyncio_server: Server,
                                                    waiter: Callable[..., None]) -> None:
    waiting = asyncio_server.stats()["waiting"]
    last = asyncio_server.stats()["last_event_id"]
    clients = [LongPollClient(asyncio_server.url, hold=30, last_event_id=last)
               for _ in range(5)]
    try:
        for client in clients:
            client.start()
            client.stop()
            assert not client.running
    finally:
        for client in clients:
            client.stop()
    time.sleep(0.3)  # a poll sent after stop() would be held by now
    waiter(lambda: asyncio_server.stats()["waiting"] == waiting, 1.5,
           "no poll to be held any more")


@pytest.mark.live
@pytest.mark.parametrize("client_class", [LongPollClient, ShortPollClient])
def test_a_refused_request_stops_the_client_with_the_reason(
        asyncio_server: Server, client_class: type[PollClient],
        waiter: Callable[..., None]) -> None:
    client = client_class(asyncio_server.url, limit=0)
    try:
        client.start()
        waiter(lambda: not client.running, 5, "the client to stop by itself")
    finally:
        client.stop()
    assert isinstance(client.error, PollError)
    assert client.error.status == 400
    assert "limit" in client.error.detail
    assert client.metrics.errors == 1
    assert client.metrics.last_error == str(client.error)


@pytest.mark.live
def test_long_poll_client_resyncs_after_gone_and_records_the_gap(
        launched: Callable[..., Server], waiter: Callable[..., None]) -> None:
    server = launched("asyncio", retention=5, hold=5)
    for _ in range(20):
        server.trigger()
    collector = Collector()
    with LongPollClient(server.url, hold=5, on_events=collector) as client:
        waiter(lambda: client.last_event_id == 20, 5, "the client to catch up")
    assert collector.ids == [16, 17, 18, 19, 20]
    summary = client.metrics.summary()
    assert (summary["gaps_reported"], summary["missing"], summary["errors"]) == (15, 0, 0)


@pytest.mark.live
def test_quiet_long_polls_end_in_204_not_in_read_timeouts(asyncio_server: Server,
                                                          waiter: Callable[..., None]) -> None:
    last = asyncio_server.stats()["last_event_id"]
    with LongPollClient(asyncio_server.url, hold=0.3, last_event_id=last) as client:
        waiter(lambda: client.metrics.empty_responses >= 3, 5, "three empty answers")
    assert client.metrics.errors == 0, client.metrics.last_error
    assert client.last_event_id == last


def test_unreachable_server_is_retried_with_backoff_not_fatal(waiter: Callable[..., None]) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    client = ShortPollClient(f"http://127.0.0.1:{port}", interval=0.01,
                             backoff_base=0.01, backoff_cap=0.05)
    try:
        client.start()
        waiter(lambda: client.metrics.errors >= 3, 5, "three failed attempts")
        assert client.running  # still trying
    finally:
        client.stop()
    assert client.error is None
    assert not client.running


def test_clients_refuse_impossible_settings() -> None:
    with pytest.raises(ValueError):
        ShortPollClient("http://127.0.0.1:1", interval=0)
    with pytest.raises(ValueError):
        LongPollClient("http://127.0.0.1:1", hold=301)


@pytest.mark.serial
@pytest.mark.live
@pytest.mark.parametrize(
    ("kind", "options"),
    [("asyncio", {}), ("naive", {"check_interval": 0.05})],
    ids=["asyncio", "naive"],
)
def test_client_resets_at_once_after_an_in_memory_restart(
        launched: Callable[..., Server], waiter: Callable[..., None], kind: str,
        options: dict[str, Any]) -> None:
    """The client sends its stream id, so a restarted server answers at once, not a hold later."""
    server = launched(kind, hold=20, **options)
    for i in range(5):
        server.trigger(f"before {i}")
    with LongPollClient(server.url, hold=20) as client:
        waiter(lambda: client.last_event_id == 5, what="the client to reach event 5")
        server.restart()  # in memory: a new stream, ids from 1 again, the same port
        restarted = time.monotonic()
        waiter(lambda: client.metrics.stream_resets == 1, timeout=10,
               what="the client to notice the new stream")
        reset_after = time.monotonic() - restarted
        server.trigger("after")
        waiter(lambda: client.last_event_id == 1, what="the client to get the new event 1")
    assert reset_after < 3, f"reset took {reset_after:.1f} s; a 20 s hold would mean a stall"
    assert client.metrics.summary()["events"] == 6
