"""helpers.exercises: the write-your-own-client check passes a correct client and says exactly
what is wrong with a bad one, against a real server."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
import requests

from helpers.exercises import Verdict, run_client_check

pytestmark = pytest.mark.live

OnEvent = Callable[[dict[str, Any]], None]


def good_client(url: str, hold: float, on_event: OnEvent, stop: threading.Event) -> None:
    """The notebook's solution, in substance."""
    session = requests.Session()
    last_event_id, failures = 0, 0
    while not stop.is_set():
        try:
            r = session.get(f"{url}/poll_for_updates", timeout=(3, hold + 5),
                            params={"last_event_id": last_event_id, "timeout": hold})
        except requests.ConnectionError:
            failures += 1
            stop.wait(random.uniform(0, min(5.0, 0.1 * 2 ** failures)))
            continue
        failures = 0
        if r.status_code == 200:
            for event in r.json():
                on_event(event)
                last_event_id = event["id"]
    session.close()


def hasty_client(url: str, hold: float, on_event: OnEvent, stop: threading.Event) -> None:
    """Short-polls as fast as it can, with no read timeout and no backoff."""
    last = 0
    while not stop.is_set():
        try:
            events = requests.get(f"{url}/events", params={"last_event_id": last}).json()
        except requests.ConnectionError:
            continue
        for event in events:
            on_event(event)
            last = event["id"]


def by_rule(verdicts: list[Verdict]) -> dict[str, bool]:
    return {v.what.split(":")[0]: v.ok for v in verdicts}


def test_a_correct_client_passes_every_line() -> None:
    verdicts = run_client_check(good_client)
    assert all(v.ok for v in verdicts), [v.what for v in verdicts if not v.ok]


def test_a_hasty_client_fails_exactly_the_rules_it_breaks() -> None:
    assert by_rule(run_client_check(hasty_client)) == {
        "every event exactly once and in order": True,
        "a read timeout longer than the hold on every long poll": False,  # it sent none
        "no busy loop while nothing happens": False,
        "a backoff while the server was down": False,
        "your client returned once stop was set": True,
    }


def test_a_client_that_raises_is_reported_not_raised() -> None:
    def unwritten(url: str, hold: float, on_event: OnEvent, stop: threading.Event) -> None:
        raise NotImplementedError("write your client here")

    first = run_client_check(unwritten)[0]
    assert not first.ok and "NotImplementedError: write your client here" in first.hint
