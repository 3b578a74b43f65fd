"""Graceful shutdown: a server that stops answers every held poll (204) instead of dropping it.

For contrast, a hard kill (SIGKILL), which is what a server without graceful shutdown amounts to
for a held poll: every one of those polls ends in a connection error.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from helpers import Server, Swarm
from helpers.faults import crash_server
from helpers.swarm import Attempt

pytestmark = pytest.mark.live

HELD = 200


def stop_while_held(server: Server, stop: Callable[[], None]
                    ) -> tuple[list[Attempt], dict[str, float]]:
    """Hold HELD polls, run `stop`, and return how those polls ended and, per client, how long
    after the stop it sent its next request (it sends one as soon as its poll ends)."""
    # A long backoff: after the stop, each client tries once, then stays quiet.
    with Swarm(server.url, HELD, "long", hold=30, record=True, backoff_base=3,
               backoff_cap=3) as swarm:
        deadline = time.monotonic() + 15
        while server.stats()["waiting"] < HELD and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.stats()["waiting"] == HELD
        began = time.time()
        stop()
        deadline = time.monotonic() + 5
        while len({a.client for a in swarm.attempts if a.sent_at >= began}) < HELD and \
                time.monotonic() < deadline:
            time.sleep(0.02)
    held = [a for a in swarm.attempts if a.sent_at < began]
    next_sent: dict[str, float] = {}
    for a in sorted(swarm.attempts, key=lambda a: a.sent_at):
        if a.sent_at >= began:
            next_sent.setdefault(a.client, a.sent_at - began)
    return held, next_sent


@pytest.mark.serial
@pytest.mark.parametrize("kind", ["asyncio", "lean", "naive"])
def test_stop_answers_every_held_poll_with_204_within_a_second(
        kind: str, launched: Callable[..., Server]) -> None:
    options = {"check_interval": 0.2} if kind == "naive" else {}
    server = launched(kind, hold=30, **options)
    held, next_sent = stop_while_held(server, server.stop)
    statuses = sorted({a.status for a in held})
    assert len(held) == HELD and statuses == [204], statuses
    assert len(next_sent) == HELD
    slowest = max(next_sent.values())
    assert slowest < 1.0, f"the last held poll ended {slowest:.2f} s after the stop"


def test_a_hard_kill_drops_every_held_poll(launched: Callable[..., Server]) -> None:
    server = launched("asyncio", hold=30)
    held, _ = stop_while_held(server, lambda: crash_server(server))
    assert len(held) == HELD and {a.status for a in held} == {0}


def test_restart_keeps_the_port(launched: Callable[..., Server]) -> None:
    server = launched("asyncio")
    url, stream = server.url, server.health()["stream"]
    server.restart()
    assert server.url == url and server.health()["stream"] != stream
