"""servers/flask_server.py: what the naive long poll costs.

Its endpoints are tested with every other server's in test_api_endpoints.py. Here, Flask's
in-process test client shows the sleep loop; the tests marked `live` start the real server,
because threads and head-of-line blocking are the point there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest
import requests

from helpers import Server

if TYPE_CHECKING:
    from conftest import InProcessApi


# --- the naive sleep loop, in process ---------------------------------------------------------


def test_stats_says_how_the_flask_server_runs(make_api: Callable[..., InProcessApi]) -> None:
    stats = make_api("flask", threaded=False, check_interval=0.25).stats()
    assert (stats["threaded"], stats["check_interval"]) == (False, 0.25)


def test_naive_poll_notices_an_event_only_at_its_next_check(
        make_api: Callable[..., InProcessApi], pool: ThreadPoolExecutor,
        waiter: Callable[..., None]) -> None:
    api = make_api("flask", hold=10, check_interval=1.0)
    held = pool.submit(api.get, "/poll_for_updates")
    waiter(lambda: api.stats()["waiting"] == 1, what="the poll to be held")
    published = time.monotonic()
    api.publish(1)
    assert held.result(timeout=5).status == 200
    # The poll started its first 1 s nap just before the publish: the event waits for it.
    assert 0.7 <= time.monotonic() - published < 3


# --- the real server --------------------------------------------------------------------------


def _health_time_while_a_poll_is_held(server: Server, hold: float) -> float:
    """Seconds a /health takes when it arrives while another client's poll is held."""
    params = {"timeout": hold, "last_event_id": server.stats()["last_event_id"]}
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(requests.get, f"{server.url}/poll_for_updates", params=params,
                           timeout=hold + 10)
        time.sleep(0.2)  # let the poll reach the server first
        started = time.monotonic()
        assert requests.get(f"{server.url}/health", timeout=hold + 10).status_code == 200
        took = time.monotonic() - started
        assert held.result().status_code == 204
    return took


@pytest.mark.live
def test_single_threaded_server_makes_the_next_client_wait(
        launched: Callable[..., Server]) -> None:
    server = launched("naive", threaded=False, hold=5)
    assert _health_time_while_a_poll_is_held(server, hold=1.5) >= 0.9


@pytest.mark.live
def test_threaded_server_answers_others_while_a_poll_is_held(naive_server: Server) -> None:
    assert _health_time_while_a_poll_is_held(naive_server, hold=1.5) < 0.5


@pytest.mark.live
def test_werkzeug_opens_a_connection_per_poll_even_over_one_session(
        naive_server: Server) -> None:
    # werkzeug answers every request with `Connection: close`, so a requests.Session cannot
    # reuse its connection: each poll pays for a new TCP connection (and a thread).
    before = naive_server.stats()["connections"]
    with requests.Session() as session:
        for _ in range(20):
            reply = session.get(f"{naive_server.url}/poll_for_updates", timeout=5,
                                params={"timeout": 0})
            assert reply.headers["Connection"] == "close"
    opened = naive_server.stats()["connections"] - before
    assert 20 <= opened <= 22, opened  # the 20 polls, and this stats request's own
