"""The kit's extension: `POST /trigger_event` with an `Idempotency-Key` publishes once.

A publisher that retries after a timeout cannot know whether its first request published; with
the same key, the retry gets the same answer (201, the same event) and nothing is published
twice. Every app in process, and one real server of each kind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
import requests

from helpers import Server

if TYPE_CHECKING:
    from conftest import InProcessApi


def _publish(api: InProcessApi, key: str | None,
             message: str = "m") -> tuple[int, dict[str, object], str | None]:
    headers = {"Idempotency-Key": key} if key is not None else {}
    reply = api.request("POST", "/trigger_event", json_body={"message": message},
                        headers=headers)
    return reply.status, reply.json(), reply.headers.get("Idempotent-Replayed")


def test_a_retry_with_the_same_key_gets_the_same_event_and_publishes_once(
        api: InProcessApi) -> None:
    first = _publish(api, "retry-me")
    again = _publish(api, "retry-me")
    assert first[0] == again[0] == 201
    assert again[1] == first[1]  # the same body: the same event, id and timestamp
    assert (first[2], again[2]) == (None, "true")
    stats = api.stats()
    assert stats["events_published"] == 1 and stats["replayed_publishes"] == 1
    assert stats["requests"]["trigger_event"] == 2


def test_other_keys_and_no_key_publish_as_usual(api: InProcessApi) -> None:
    ids = [_publish(api, key)[1]["event"]["id"] for key in ("a", "b", None, None)]  # type: ignore[index]
    assert ids == [1, 2, 3, 4]


def test_a_key_for_another_message_or_a_malformed_key_is_refused(api: InProcessApi) -> None:
    assert _publish(api, "k", "one")[0] == 201
    status, body, _ = _publish(api, "k", "two")
    assert (status, body["error"]) == (422, "idempotency_key_reused")
    status, body, _ = _publish(api, "x" * 256)
    assert (status, body["error"]) == (400, "bad_idempotency_key")
    assert api.stats()["events_published"] == 1


def test_an_unauthorised_retry_does_not_learn_the_event(
        make_api: Callable[..., InProcessApi]) -> None:
    for kind in ("flask", "fastapi"):
        api = make_api(kind, token="s3cret")
        reply = api.request("POST", "/trigger_event", headers={
            "Idempotency-Key": "k", "Authorization": "Bearer s3cret"})
        assert reply.status == 201
        stolen = api.request("POST", "/trigger_event", headers={"Idempotency-Key": "k"})
        assert stolen.status == 401 and "event" not in stolen.json()


@pytest.mark.live
@pytest.mark.parametrize("kind", ["asyncio", "naive"])
def test_a_retried_publish_publishes_once_on_a_real_server(
        kind: str, launched: Callable[..., Server]) -> None:
    server = launched(kind)
    answers = [requests.post(server.url + "/trigger_event", json={"message": "once"},
                             headers={"Idempotency-Key": "publish-7f3a"}, timeout=5)
               for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert len({a.text for a in answers}) == 1
    assert [a.headers.get("Idempotent-Replayed") for a in answers] == [None, "true", "true"]
    events = requests.get(server.url + "/events", timeout=5).json()
    assert [e["message"] for e in events] == ["once"]
