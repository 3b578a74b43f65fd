"""Several asyncio servers on one Redis broker behave as one server (API.md, "the broker").

One stream and one id sequence across them; a poll, SSE or WebSocket on one woken by a publish
on another; retention and 410 counted in the broker; bad input answered exactly as the
in-memory server answers it; `pid` and `X-Served-By` saying which process answered.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from helpers import Metrics, RedisServer, Server, SSEClient, WebSocketClient
from helpers.faults import ids_by_client

pytestmark = pytest.mark.live


def events(server: Server, after: int = 0, **params: Any) -> requests.Response:
    return requests.get(server.url + "/events", params={"last_event_id": after, **params},
                        timeout=5)


def test_three_servers_share_one_stream_and_one_id_sequence(
        on_broker: Callable[..., Server]) -> None:
    servers = [on_broker() for _ in range(3)]
    published = [server.trigger(f"m{n}") for n, server in zip(range(30), itertools.cycle(servers))]
    assert [e["id"] for e in published] == list(range(1, 31))
    assert len({s.health()["stream"] for s in servers}) == 1
    for server in servers:
        assert events(server).json() == published  # the same log, whoever published
        stats = server.stats()
        assert (stats["events_published"], stats["last_event_id"]) == (30, 30)
        assert stats["stream"] == servers[0].health()["stream"]


def test_pid_and_served_by_say_which_server_answered(on_broker: Callable[..., Server]) -> None:
    a, b = on_broker(), on_broker()
    for server in (a, b):
        assert server.health()["pid"] == server.pid == server.stats()["pid"]
        for reply in (events(server), requests.get(server.url + "/nowhere", timeout=5),
                      requests.post(server.url + "/trigger_event", json={}, timeout=5)):
            assert reply.headers["X-Served-By"] == str(server.pid), reply.status_code
        with requests.get(server.url + "/sse", stream=True, timeout=5) as stream:
            assert stream.headers["X-Served-By"] == str(server.pid)


def test_a_long_poll_on_one_server_wakes_for_a_publish_on_another(
        on_broker: Callable[..., Server]) -> None:
    a, b = on_broker(), on_broker()
    answers: list[requests.Response] = []
    poll = threading.Thread(target=lambda: answers.append(requests.get(
        a.url + "/poll_for_updates", params={"last_event_id": 0, "timeout": 10}, timeout=15)))
    poll.start()
    time.sleep(0.5)  # held on a
    start = time.monotonic()
    event = b.trigger("through b")
    poll.join(10)
    assert answers and answers[0].status_code == 200
    assert answers[0].json() == [event]
    assert time.monotonic() - start < 5  # woken, not timed out (the hold is 10 s)


@pytest.mark.parametrize("client_class", [SSEClient, WebSocketClient])
def test_a_stream_on_one_server_gets_the_events_published_on_the_others(
        on_broker: Callable[..., Server], client_class: type[SSEClient],
        waiter: Callable[..., None]) -> None:
    a, b, c = on_broker(), on_broker(), on_broker()
    metrics = Metrics()
    with client_class(a.url, metrics=metrics, name="on a").start():
        time.sleep(0.5)
        for n, server in zip(range(6), itertools.cycle((b, c))):
            server.trigger(f"m{n}")
        waiter(lambda: len(ids_by_client(metrics)["on a"]) >= 6, 5, "six events on a's stream")
    assert ids_by_client(metrics)["on a"] == [1, 2, 3, 4, 5, 6]


def test_retention_and_410_are_counted_in_the_broker(on_broker: Callable[..., Server]) -> None:
    a, b = on_broker(retention=5), on_broker(retention=5)
    for n in range(12):
        (a, b)[n % 2].trigger(f"m{n}")
    for server in (a, b):
        gone = events(server, 0)
        assert gone.status_code == 410
        assert gone.json()["error"] == "gone" and gone.json()["oldest_id"] == 8
        assert [e["id"] for e in events(server, 7).json()] == [8, 9, 10, 11, 12]
        stats = server.stats()
        assert (stats["oldest_event_id"], stats["last_event_id"]) == (8, 12)


BAD_REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/events", {"params": {"last_event_id": "x"}}),
    ("GET", "/events", {"params": {"last_event_id": "-1"}}),
    ("GET", "/events", {"params": {"limit": "0"}}),
    ("GET", "/events", {"params": {"limit": "1001"}}),
    ("GET", "/poll_for_updates", {"params": {"timeout": "nan"}}),
    ("GET", "/poll_for_updates", {"params": {"timeout": "301"}}),
    ("GET", "/sse", {"params": {"last_event_id": "abc"}}),
    ("GET", "/sse", {"headers": {"Last-Event-ID": "-3"}}),
    ("POST", "/trigger_event", {"data": b"{not json", "headers": {"Content-Type":
                                                                  "application/json"}}),
    ("POST", "/trigger_event", {"json": [1, 2]}),
    ("POST", "/trigger_event", {"json": {"message": 7}}),
    ("POST", "/trigger_event", {"json": {"message": "x" * 4097}}),
    ("POST", "/trigger_event", {"json": {"message": "m"}, "headers": {"Idempotency-Key": ""}}),
    ("GET", "/trigger_event", {}),
    ("POST", "/events", {}),
    ("GET", "/nowhere", {}),
]


def answer(server: Server, method: str, path: str, options: dict[str, Any]) -> tuple[int, Any]:
    reply = requests.request(method, server.url + path, timeout=5, **options)
    return reply.status_code, reply.json()


def test_bad_input_gets_the_answers_of_the_in_memory_server(
        on_broker: Callable[..., Server], launched: Callable[..., Server]) -> None:
    broker, memory = on_broker(), launched("asyncio", hold=10)
    for method, path, options in BAD_REQUESTS:
        expected = answer(memory, method, path, options)
        assert 400 <= expected[0] < 500, (method, path)
        assert answer(broker, method, path, options) == expected, (method, path, options)


def test_pubsub_numsub_counts_the_live_servers(
        on_broker: Callable[..., Server], redis_server: RedisServer,
        waiter: Callable[..., None]) -> None:
    servers = [on_broker() for _ in range(3)]
    channel = servers[0].stats()["broker"]["key"] + ":published"

    def subscribers() -> int:
        with redis_server.client() as client:
            return int(client.pubsub_numsub(channel)[0][1])

    assert subscribers() == 3
    servers[1].stop()
    waiter(lambda: subscribers() == 2, 5, "the stopped server's subscription to go")
    assert redis_server.kill_pubsub() == 2
    waiter(lambda: subscribers() == 2, 5, "both live servers to subscribe again")
    # Redis counts a SUBSCRIBE when it gets it, a server once it has read Redis's confirmation
    waiter(lambda: [s.stats()["broker"]["subscriptions"] for s in (servers[0], servers[2])]
           == [2, 2], 5, "both live servers to count their second subscription")


def test_broker_servers_need_a_reachable_redis_to_start(
        launched: Callable[..., Server], redis_server: RedisServer) -> None:
    url = redis_server.url
    redis_server.stop()
    with pytest.raises(Exception, match="does not answer"):
        launched("asyncio", broker=url, ready_timeout=30)


def test_an_idempotency_key_publishes_once_across_servers(
        on_broker: Callable[..., Server]) -> None:
    a, b = on_broker(), on_broker()
    key = {"Idempotency-Key": "retry-me-7f3a"}
    first = requests.post(a.url + "/trigger_event", json={"message": "once"}, headers=key,
                          timeout=5)
    retried = requests.post(b.url + "/trigger_event", json={"message": "once"}, headers=key,
                            timeout=5)  # a retry that a gateway sent to another server
    assert first.status_code == retried.status_code == 201
    assert retried.json() == first.json() and retried.headers["Idempotent-Replayed"] == "true"
    assert b.stats()["last_event_id"] == 1
    reused = requests.post(b.url + "/trigger_event", json={"message": "other"}, headers=key,
                           timeout=5)
    assert reused.status_code == 422 and reused.json()["error"] == "idempotency_key_reused"


def test_a_held_poll_ends_when_redis_loses_the_log(
        redis_server: RedisServer, on_broker: Callable[..., Server]) -> None:
    """Redis restarted without persistence: a new log, a new stream, ids from 1 again. A poll
    held with a cursor from the old log must hear of it now, not when its hold ends."""
    server = on_broker(hold=30)
    for n in range(5):
        server.trigger(f"before {n}")
    old_stream = server.health()["stream"]
    answers: list[requests.Response] = []
    held = threading.Thread(target=lambda: answers.append(requests.get(
        server.url + "/poll_for_updates", params={"last_event_id": 5, "timeout": 30}, timeout=40)))
    held.start()
    deadline = time.monotonic() + 5
    while server.stats()["waiting"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    redis_server.restart()  # redis_server keeps nothing across a restart: the log is gone
    server.trigger("after")  # the first publish on the new log: the server adopts its stream
    held.join(15)
    assert answers, "the held poll did not end within 15 s of Redis losing the log"
    assert answers[0].status_code == 204
    assert answers[0].headers["X-Stream-Id"] not in ("", old_stream)
    assert time.monotonic() - started < 15
