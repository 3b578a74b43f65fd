"""helpers/swarm.py: many simulated clients on one event loop, each getting every event once."""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Callable

import pytest

from helpers import Metrics, Server, Swarm


def ids_by_client(metrics: Metrics) -> dict[object, list[int]]:
    received: dict[object, list[int]] = defaultdict(list)
    for delivery in metrics.deliveries:
        received[delivery.client].append(delivery.event_id)
    return received


@pytest.fixture
def wait_for(waiter: Callable[..., None]) -> Callable[..., None]:
    """`waiter` (tests/conftest.py), checking every 20 ms."""
    return functools.partial(waiter, interval=0.02)


@pytest.mark.live
def test_long_poll_swarm_gets_every_event_exactly_once(launched: Callable[..., Server],
                                                       wait_for: Callable[..., None]) -> None:
    server = launched("asyncio", hold=30)
    swarm = Swarm(server.url, 50, "long", hold=30, name="long")
    try:
        swarm.start()
        wait_for(lambda: server.stats()["waiting"] == 50, 10, "all 50 polls to be held")
        for i in range(20):
            server.trigger(f"event {i + 1}")
            time.sleep(0.01)
        wait_for(lambda: all(c.last_event_id == 20 for c in swarm.cursors), 10,
                 "every client to reach event 20")
        wait_for(lambda: server.stats()["waiting"] == 50, 5, "the clients to poll again")
    finally:
        started = time.monotonic()
        swarm.stop()
        stop_took = time.monotonic() - started
    assert stop_took < 2
    assert not swarm.running
    received = ids_by_client(swarm.metrics)
    assert sorted(received) == sorted(f"long-{i}" for i in range(50))
    assert all(ids == list(range(1, 21)) for ids in received.values()), received
    summary = swarm.metrics.summary()
    assert (summary["events"], summary["duplicates"], summary["missing"]) == (1000, 0, 0)
    assert summary["errors"] == 0, summary["last_error"]
    assert swarm.errors == []
    # Each client needs at most one request per event, plus the poll still held at the end.
    assert summary["requests"] <= 50 * 21
    wait_for(lambda: server.stats()["waiting"] == 0, 1.5,
             "the server to release every held poll")


@pytest.mark.live
def test_short_poll_swarm_gets_every_event_exactly_once(naive_server: Server,
                                                        wait_for: Callable[..., None]) -> None:
    last = naive_server.stats()["last_event_id"]
    with Swarm(naive_server.url, 10, "short", interval=0.05, last_event_id=last,
               name="short") as swarm:
        for i in range(20):
            naive_server.trigger(f"event {i + 1}")
            time.sleep(0.01)
        wait_for(lambda: all(c.last_event_id == last + 20 for c in swarm.cursors), 10,
                 "every client to reach the last event")
        # Nothing new after that: the clients keep asking, and keep getting [].
        wait_for(lambda: swarm.metrics.empty_responses >= 20, 5, "empty answers")
    assert not swarm.running
    received = ids_by_client(swarm.metrics)
    assert len(received) == 10
    assert all(ids == list(range(last + 1, last + 21)) for ids in received.values()), received
    summary = swarm.metrics.summary()
    assert (summary["duplicates"], summary["missing"], summary["errors"]) == (0, 0, 0)


@pytest.mark.live
def test_a_refused_poll_stops_that_client_with_the_reason(asyncio_server: Server,
                                                          wait_for: Callable[..., None]) -> None:
    with Swarm(asyncio_server.url, 3, "long", hold=1, limit=0) as swarm:
        wait_for(lambda: len(swarm.errors) == 3, 5, "all three clients to be refused")
    assert {error.status for error in swarm.errors} == {400}
    assert all("limit" in error.detail for error in swarm.errors)
    assert swarm.metrics.errors == 3


def test_swarm_refuses_impossible_settings() -> None:
    with pytest.raises(ValueError):
        Swarm("http://127.0.0.1:1", 0)
    with pytest.raises(ValueError):
        Swarm("http://127.0.0.1:1", 5, "medium")  # type: ignore[arg-type]
