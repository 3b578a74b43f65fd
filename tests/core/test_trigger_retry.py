"""Publishers retry with one `Idempotency-Key` per publish, so a retry publishes once (issue 15).

A real server is paused (SIGSTOP) so the first try of a publish times out while its request
waits in the kernel's queue; resumed, the server publishes it, and the retry with the same key
gets the same event back instead of a second one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from helpers import PollError, Server
from helpers.errors import ServerUnavailable
from helpers.http import IDEMPOTENCY_HEADER, publish_with_retries, request


def test_a_trigger_retried_after_a_stall_publishes_once(launched: Callable[..., Server]) -> None:
    server = launched("asyncio", hold=5)
    server.timeout = 1.0  # the first try gives up while the server is frozen
    result: dict[str, Any] = {}
    server.pause()
    try:
        publisher = threading.Thread(target=lambda: result.update(server.trigger("once")))
        publisher.start()
        time.sleep(1.4)  # the first try timed out; the second waits in the queue
    finally:
        server.resume()
    publisher.join(10)
    assert not publisher.is_alive()
    events = request("GET", server.url + "/events").json()
    assert [e["message"] for e in events] == ["once"], events
    assert result["id"] == events[0]["id"]
    assert server.stats()["events_published"] == 1


def test_one_key_per_publish_and_the_same_key_on_every_retry() -> None:
    keys: list[str] = []

    def send(headers: dict[str, str]) -> str:
        keys.append(headers[IDEMPOTENCY_HEADER])
        if len(keys) < 3:
            raise ServerUnavailable("HTTP 503: busy", status=503)
        return "published"

    assert publish_with_retries(send, base_delay=0.01) == "published"
    assert publish_with_retries(send, base_delay=0.01) == "published"
    assert len(keys) == 4 and len(set(keys[:3])) == 1 and keys[3] != keys[0], keys
    assert len(keys[0]) == 32 and int(keys[0], 16) >= 0  # uuid4().hex


def test_retries_are_bounded_and_a_refusal_is_not_retried() -> None:
    tries: list[int] = []

    def unavailable(headers: dict[str, str]) -> None:
        tries.append(1)
        raise ServerUnavailable("no answer")

    with pytest.raises(ServerUnavailable):
        publish_with_retries(unavailable, base_delay=0.01)
    assert len(tries) == 3

    def refused(headers: dict[str, str]) -> None:
        tries.append(1)
        raise PollError(422, "idempotency_key_reused", "a key was reused for another body")

    with pytest.raises(PollError):
        publish_with_retries(refused, base_delay=0.01)
    assert len(tries) == 4


def test_a_replay_answers_the_same_event(launched: Callable[..., Server]) -> None:
    server = launched("asyncio", hold=5)
    headers = {IDEMPOTENCY_HEADER: "a" * 32}
    first = request("POST", server.url + "/trigger_event", json={"message": "m"}, headers=headers)
    again = request("POST", server.url + "/trigger_event", json={"message": "m"}, headers=headers)
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["event"] == first.json()["event"]
    assert server.stats()["events_published"] == 1
