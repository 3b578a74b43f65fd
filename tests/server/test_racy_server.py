"""servers/racy_server.py: the same API as the asyncio server, and a wake-up it really misses."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from helpers import Server
from servers import racy_server
from servers.contract import STREAM_HEADER

HOLD_S = 1.0
RACE_WINDOW_S = 0.2  # wide, so a trigger sent right after the poll is held lands inside it
TRIES = 3


def poll_then_trigger(server: Server, pool: ThreadPoolExecutor) -> tuple[int, float]:
    """Send a long poll, trigger an event as soon as /stats shows it held, and time the answer.

    Returns the poll's status and its delivery latency in seconds (answer time minus the event's
    timestamp). The correct server answers within milliseconds; the racy one is still inside its
    race window when the event is published, so it answers only when the hold runs out.
    """
    last = server.stats()["last_event_id"]
    poll = pool.submit(requests.get, server.url + "/poll_for_updates",
                       params={"last_event_id": last, "timeout": HOLD_S}, timeout=HOLD_S + 5)
    deadline = time.monotonic() + 5
    while server.stats()["waiting"] < 1:
        assert time.monotonic() < deadline, "the poll was never held"
        time.sleep(0.002)
    event = server.trigger("race")
    response = poll.result()
    latency = time.time() - event["timestamp"]
    if response.status_code == 200:
        assert [e["id"] for e in response.json()] == [event["id"]]
    return response.status_code, latency


@pytest.mark.serial
@pytest.mark.live
def test_racy_server_misses_a_wake_up_that_the_asyncio_server_delivers(
    launched: Callable[..., Server], asyncio_server: Server, pool: ThreadPoolExecutor
) -> None:
    racy = launched("racy", hold=HOLD_S, race_window=RACE_WINDOW_S)
    racy_runs = [poll_then_trigger(racy, pool) for _ in range(TRIES)]
    good_runs = [poll_then_trigger(asyncio_server, pool) for _ in range(TRIES)]

    def missed(runs: list[tuple[int, float]]) -> int:
        # A missed wake-up is delivered only when the hold ends (late 200) or not at all (204).
        return sum(status == 204 or latency > 0.8 * HOLD_S for status, latency in runs)

    assert missed(racy_runs) >= 1, f"the racy server never missed a wake-up: {racy_runs}"
    assert missed(good_runs) == 0, f"the asyncio server missed a wake-up: {good_runs}"
    assert all(status == 200 and latency < 0.05 for status, latency in good_runs), good_runs


@pytest.mark.live
def test_racy_server_speaks_the_same_api(launched: Callable[..., Server]) -> None:
    server = launched("racy", hold=0.2, race_window=0.01)
    assert server.health()["server"] == "racy_server"
    stats = server.stats()
    assert stats["server"] == "racy_server" and stats["waiting"] == 0

    empty = requests.get(server.url + "/poll_for_updates", params={"timeout": 0.1}, timeout=5)
    assert empty.status_code == 204 and empty.content == b""
    assert empty.headers[STREAM_HEADER] == stats["stream"]

    event = server.trigger("hello")
    found = requests.get(server.url + "/poll_for_updates", params={"last_event_id": 0}, timeout=5)
    assert found.status_code == 200 and found.json() == [event]

    bad = requests.get(server.url + "/poll_for_updates", params={"timeout": "soon"}, timeout=5)
    assert bad.status_code == 400 and bad.json()["error"] == "bad_parameter"
    assert requests.get(server.url + "/nope", timeout=5).json()["error"] == "not_found"
    wrong = requests.get(server.url + "/trigger_event", timeout=5)
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "POST"
    assert server.stats()["empty_responses"] == 1


def test_race_window_must_be_a_sensible_number_of_seconds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        racy_server.main(["--race-window", "-1"])
    assert exited.value.code == 2
    assert "--race-window must be from 0 to 60 seconds" in capsys.readouterr().err
