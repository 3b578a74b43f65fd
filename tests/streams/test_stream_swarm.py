"""Swarm(..., "sse" | "ws"): many streams from one kernel, with the polls' rules and metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import Server, Swarm

pytestmark = pytest.mark.live


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("strategy", ["sse", "ws"])
def test_a_swarm_of_streams_survives_a_restart_and_killed_clients(
        launched: Callable[..., Server], strategy: str, tmp_path: Path) -> None:
    server = launched("asyncio", store=f"sqlite:{tmp_path / 'events.db'}")
    n = 200
    with Swarm(server.url, n, strategy, backoff_cap=0.5) as swarm:  # type: ignore[arg-type]
        wait_for(lambda: server.stats()["streams"] == n, 20, f"{n} open streams")
        for i in range(5):
            server.trigger(f"before {i}")
        wait_for(lambda: swarm.metrics.summary()["events"] == 5 * n, 10, "the first fan-outs")
        server.restart()  # the same file: the same stream, ids go on
        for i in range(5):
            server.trigger(f"after {i}")
        swarm.kill(20, down_for=0.2)  # and some clients die mid-stream, then come back
        for i in range(5):
            server.trigger(f"last {i}")
        wait_for(lambda: swarm.metrics.summary()["events"] == 15 * n, 30, "every event, everywhere")
    summary = swarm.metrics.summary()
    assert summary["missing"] == summary["duplicates"] == summary["stream_resets"] == 0
    assert summary["requests"] >= 2 * n  # every client reconnected at least once
    assert not swarm.errors
    wait_for(lambda: server.stats()["streams"] == 0, 5, "the server to release every stream")


def test_a_swarm_of_streams_starts_over_on_an_in_memory_restart(
        launched: Callable[..., Server]) -> None:
    server = launched("asyncio")
    with Swarm(server.url, 50, "ws", backoff_cap=0.5) as swarm:
        wait_for(lambda: server.stats()["streams"] == 50, 10, "50 WebSockets")
        server.trigger("old")
        wait_for(lambda: swarm.metrics.summary()["events"] == 50, 10, "the old event")
        server.restart()
        wait_for(lambda: server.stats()["streams"] == 50, 20, "every client back")
        server.trigger("new")
        wait_for(lambda: swarm.metrics.summary()["events"] == 100, 10, "the new event")
    assert swarm.metrics.summary()["stream_resets"] == 50
