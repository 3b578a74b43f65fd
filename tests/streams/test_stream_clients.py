"""SSEClient and WebSocketClient against real servers: delivery, resume, reset, gone, stop.

Every test reads the same `Metrics` the polling clients report into, so "nothing lost or
duplicated" means what it means for LongPollClient: `missing == duplicates == 0`.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import Metrics, PollError, Server
from helpers.streams import SSEClient, StreamClient, WebSocketClient

pytestmark = pytest.mark.live
CLIENTS = [SSEClient, WebSocketClient]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def connected(client: StreamClient) -> bool:
    return client.connections > 0 and client.cursor.stream is not None


@pytest.mark.parametrize("client_class", CLIENTS)
def test_one_connection_carries_every_event_promptly(launched: Callable[..., Server],
                                                     client_class: type[StreamClient]) -> None:
    server = launched("asyncio")
    seen: list[int] = []
    with client_class(server.url, on_events=lambda events: seen.extend(e["id"] for e in events)
                      ) as client:
        wait_for(lambda: connected(client), 5, "the stream to open")
        for i in range(50):
            server.trigger(f"event {i}")
            time.sleep(0.005)
        wait_for(lambda: client.last_event_id == 50, 5, "50 events")
    summary = client.metrics.summary()
    assert seen == list(range(1, 51))
    assert summary["missing"] == summary["duplicates"] == 0
    assert summary["requests"] == client.connections == 1  # one request for all 50 events
    assert summary["latency_ms_p50"] < 20


@pytest.mark.parametrize("client_class", CLIENTS)
def test_resume_after_a_kill_and_a_restart_with_the_sqlite_store(
        launched: Callable[..., Server], client_class: type[StreamClient],
        tmp_path: Path) -> None:
    server = launched("asyncio", store=f"sqlite:{tmp_path / 'events.db'}")
    metrics = Metrics()
    with client_class(server.url, metrics=metrics, backoff_cap=0.5) as client:
        wait_for(lambda: connected(client), 5, "the stream to open")
        for i in range(10):
            server.trigger(f"before {i}")
        wait_for(lambda: client.last_event_id == 10, 5, "the first 10 events")
        os.kill(server.pid, signal.SIGKILL)  # no goodbye: the connection just drops
        server.restart()  # same port, same file: same stream, ids go on from 11
        for i in range(10):
            server.trigger(f"after {i}")  # published while the client may still be away
        server.restart()  # and once more, politely (SIGTERM)
        for i in range(10):
            server.trigger(f"last {i}")
        wait_for(lambda: client.last_event_id == 30, 15, "all 30 events after two restarts")
    summary = metrics.summary()
    assert summary["events"] == 30
    assert summary["missing"] == summary["duplicates"] == summary["stream_resets"] == 0
    assert client.connections >= 2  # it really reconnected (twice, unless both fell in one gap)


@pytest.mark.parametrize("client_class", CLIENTS)
def test_an_in_memory_restart_resets_the_cursor(launched: Callable[..., Server],
                                                client_class: type[StreamClient]) -> None:
    server = launched("asyncio")
    with client_class(server.url, backoff_cap=0.5) as client:
        wait_for(lambda: connected(client), 5, "the stream to open")
        for i in range(5):
            server.trigger(f"old {i}")
        wait_for(lambda: client.last_event_id == 5, 5, "5 events")
        old_stream = client.cursor.stream
        server.restart()  # a fresh log: a new stream id, ids from 1 again
        for i in range(3):
            server.trigger(f"new {i}")
        wait_for(lambda: client.last_event_id == 3 and client.cursor.stream != old_stream, 15,
                 "the 3 events of the new stream")
    summary = client.metrics.summary()
    assert summary["stream_resets"] == 1
    assert summary["events"] == 8 and summary["missing"] == summary["duplicates"] == 0


@pytest.mark.parametrize("client_class", CLIENTS)
def test_a_cursor_older_than_retention_records_the_gap(launched: Callable[..., Server],
                                                       client_class: type[StreamClient]) -> None:
    server = launched("asyncio", retention=5)
    for i in range(12):
        server.trigger(f"m{i}")
    oldest = server.stats()["oldest_event_id"]
    with client_class(server.url, last_event_id=1) as client:
        wait_for(lambda: client.last_event_id == 12, 5, "the retained events")
    summary = client.metrics.summary()
    assert summary["gaps_reported"] == oldest - 2  # ids 2 .. oldest-1 are gone, and said so
    assert summary["events"] == 12 - oldest + 1 and summary["missing"] == 0


@pytest.mark.parametrize("client_class", CLIENTS)
def test_a_refused_cursor_stops_the_client_with_the_reason(launched: Callable[..., Server],
                                                           client_class: type[StreamClient]
                                                           ) -> None:
    server = launched("asyncio")
    client = client_class(server.url, last_event_id=-1).start()
    wait_for(lambda: not client.running, 5, "the client to stop")
    assert isinstance(client.error, PollError) and client.error.status == 400
    client.stop()


@pytest.mark.parametrize("client_class", CLIENTS)
def test_stop_returns_within_a_second_connected_or_backing_off(
        launched: Callable[..., Server], client_class: type[StreamClient]) -> None:
    server = launched("asyncio")
    client = client_class(server.url).start()
    wait_for(lambda: connected(client), 5, "the stream to open")
    started = time.monotonic()
    client.stop()
    assert time.monotonic() - started < 1 and not client.running
    server.stop()  # now nothing answers: the client backs off between attempts
    client = client_class(server.url, backoff_base=10, backoff_cap=10).start()
    wait_for(lambda: client.metrics.errors >= 1, 5, "a refused connection")
    started = time.monotonic()
    client.stop()
    assert time.monotonic() - started < 1 and not client.running


def test_a_websocket_client_publishes_over_its_own_connection(
        launched: Callable[..., Server]) -> None:
    server = launched("asyncio")
    with WebSocketClient(server.url) as client:
        wait_for(lambda: connected(client), 5, "the socket to open")
        client.publish("from the socket")
        wait_for(lambda: client.last_event_id == 1, 5, "its own event back")
    assert server.stats()["last_event_id"] == 1
