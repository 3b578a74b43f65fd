"""The broker under faults: Redis down or frozen, pub/sub cut, servers killed, Redis restarted.

A broker that does not answer is a quick 503 with Retry-After, never a hang or a 500, and the
server recovers by itself. A cut subscription loses nothing in `log` mode (the backfill), and
loses the gap in `relay` mode (notebook 08's bug, shown here on purpose). The big test keeps 50
clients of three kinds on a 3-server cluster through all of it, and counts what they got.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests
from service_check import need_redis

from helpers import (
    LongPollClient,
    Metrics,
    RedisServer,
    Server,
    SSEClient,
    WebSocketClient,
    launch,
    launch_redis,
)
from helpers.faults import crash_server, delivery_report, ids_by_client

pytestmark = pytest.mark.live


def get(server: Server, path: str = "/events", **params: Any) -> requests.Response:
    return requests.get(server.url + path, params=params, timeout=10)


def assert_broker_unavailable(reply: requests.Response, took: float) -> None:
    assert reply.status_code == 503, reply.text
    assert reply.json()["error"] == "broker_unavailable" and reply.json()["detail"]
    assert int(reply.headers["Retry-After"]) >= 1
    assert took < 3.0, f"a broker that is down took {took:.1f} s to answer: that is a hang"


def timed(call: Callable[[], requests.Response]) -> tuple[requests.Response, float]:
    start = time.monotonic()
    reply = call()
    return reply, time.monotonic() - start


def test_redis_down_is_a_quick_503_and_the_server_recovers_by_itself(
        on_broker: Callable[..., Server], redis_server: RedisServer,
        waiter: Callable[..., None]) -> None:
    server = on_broker(hold=2)
    server.trigger("before")
    held: list[requests.Response] = []
    poll = threading.Thread(target=lambda: held.append(get(
        server, "/poll_for_updates", last_event_id=1, timeout=2)))
    poll.start()
    time.sleep(0.3)
    redis_server.stop()
    for call in (lambda: get(server), lambda: get(server, "/poll_for_updates", timeout=1),
                 lambda: requests.post(server.url + "/trigger_event", json={}, timeout=10)):
        assert_broker_unavailable(*timed(call))
    poll.join(5)
    assert held and held[0].status_code in (204, 503)  # the held poll ended cleanly
    assert get(server, "/health").status_code == 200  # alive, so a gateway keeps it
    assert get(server, "/stats").json()["broker"]["subscribed"] is False
    redis_server.start()  # the same port; no persistence, so a new, empty log
    waiter(lambda: get(server).status_code == 200, 10, "the server to reach Redis again")
    assert server.trigger("after")["id"] == 1
    waiter(lambda: get(server, "/stats").json()["broker"]["subscribed"], 10, "resubscribed")


def test_a_frozen_redis_is_a_503_within_the_socket_timeout(
        on_broker: Callable[..., Server], redis_server: RedisServer) -> None:
    server = on_broker()
    os.kill(redis_server.pid, signal.SIGSTOP)  # up, but answering nothing: a hung host
    try:
        assert_broker_unavailable(*timed(lambda: get(server)))
        assert_broker_unavailable(*timed(lambda: requests.post(
            server.url + "/trigger_event", json={}, timeout=10)))
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
    assert get(server).status_code == 200


@pytest.mark.parametrize("mode", ["log", "relay"])
def test_a_cut_subscription_loses_nothing_with_the_log_and_the_gap_with_relays(
        mode: str, on_broker: Callable[..., Server], redis_server: RedisServer,
        waiter: Callable[..., None]) -> None:
    a, b = on_broker(broker_mode=mode, hold=30), on_broker(broker_mode=mode, hold=30)
    metrics = Metrics()
    clients = [LongPollClient(a.url, hold=30, metrics=metrics, name="poll on a"),
               SSEClient(a.url, metrics=metrics, name="sse on a")]
    for client in clients:
        client.start()
    try:
        b.trigger("warm-up")
        waiter(lambda: all(ids_by_client(metrics)[c.cursor.name] for c in clients), 10,
               "both clients on a to get the warm-up event")
        a.pause()  # so that a cannot resubscribe before the gap's events are published
        assert redis_server.kill_pubsub() == 2
        gap = [b.trigger(f"during the gap {n}")["id"] for n in range(5)]
        a.resume()
        waiter(lambda: a.stats()["broker"]["subscriptions"] == 2, 10, "a to resubscribe")
        if mode == "log":
            # No publish after the gap: only the backfill can bring these within the hold.
            waiter(lambda: all(ids_by_client(metrics)[c.cursor.name] == [1, *gap]
                               for c in clients), 5, "the backfill to deliver the gap")
        else:
            marker = b.trigger("after the gap")["id"]
            waiter(lambda: all(ids_by_client(metrics)[c.cursor.name][-1] == marker
                               for c in clients), 10, "the marker on a")
            for client in clients:  # THE BUG: the relay never heard of the gap's events
                assert ids_by_client(metrics)[client.cursor.name] == [1, marker]
            assert [e["id"] for e in get(a, last_event_id=0).json()] == [1, marker]
    finally:
        for client in clients:
            client.stop()


# --- nothing lost or duplicated, whatever breaks ----------------------------------------------

EVENTS = 500
CLIENTS = 50
SERVERS = 3


class RandomPublisher:
    """Publish EVENTS events, each through a random live server, while faults happen.

    A publish that fails is tried again through another server. Without an Idempotency-Key
    shared by the servers, a publish whose answer was lost may have happened: the ids stay
    one sequence either way, so the check below expects every id up to the log's last.
    """

    def __init__(self, servers: list[Server], rng: random.Random) -> None:
        self.servers, self.rng = servers, rng
        self.published = self.failed = 0
        self.done = threading.Event()
        self.at: dict[int, threading.Event] = {}

    def when(self, n: int) -> threading.Event:
        """An event set once the n-th publish has succeeded: at once if it already has, since a
        slow fault may let the publisher run past the next fault's point."""
        event = self.at.setdefault(n, threading.Event())
        if self.published >= n:
            event.set()
        return event

    def run(self) -> None:
        sessions = {server.url: requests.Session() for server in self.servers}  # keep-alive
        while self.published < EVENTS:
            server = self.rng.choice(self.servers)
            try:
                reply = sessions[server.url].post(server.url + "/trigger_event",
                                                  json={"message": f"e{self.published}"},
                                                  timeout=5)
                ok = reply.status_code == 201
            except requests.RequestException:
                ok = False
            if not ok:
                self.failed += 1
                time.sleep(0.02)
                continue
            self.published += 1
            if self.published in self.at:
                self.at[self.published].set()
            time.sleep(self.rng.uniform(0, 0.004))
        for session in sessions.values():
            session.close()
        self.done.set()


def make_client(n: int, url: str, metrics: Metrics) -> Any:
    kind = (LongPollClient, SSEClient, WebSocketClient)[n % 3]
    options: dict[str, Any] = {"metrics": metrics, "name": f"{kind.__name__}-{n}",
                               "backoff_cap": 1.0}
    if kind is LongPollClient:
        options["hold"] = 5
    return kind(url, **options)


@pytest.mark.slow
def test_nothing_lost_or_duplicated_through_kills_cuts_and_a_redis_restart(
        waiter: Callable[..., None]) -> None:
    need_redis()
    rng = random.Random(13)
    started = time.monotonic()
    redis_server = launch_redis(appendonly=True)
    key = f"faults-{uuid.uuid4().hex[:6]}"
    servers: list[Server] = []
    clients: list[Any] = []
    try:
        servers += [launch("asyncio", broker=redis_server.url, broker_key=key, hold=5)
                    for _ in range(SERVERS)]
        metrics = Metrics()
        clients += [make_client(n, servers[n % SERVERS].url, metrics) for n in range(CLIENTS)]
        for client in clients:
            client.start()
        time.sleep(1.0)
        publisher = RandomPublisher(servers, rng)
        step = EVENTS // 6  # a fault after each sixth of the events
        faults = [(step, lambda: crash_server(servers[1], restart=True)),
                  (2 * step, redis_server.kill_pubsub),
                  (3 * step, redis_server.restart),
                  (4 * step, lambda: crash_server(servers[2], restart=True)),
                  (5 * step, redis_server.kill_pubsub)]
        thread = threading.Thread(target=publisher.run, daemon=True)
        thread.start()
        done = []
        for at, fault in faults:
            assert publisher.when(at).wait(60), f"publishing stalled before event {at}"
            fault()
            done.append(at)
        assert publisher.done.wait(60), "the publisher did not finish"
        last_id = servers[0].stats()["last_event_id"]
        names = [client.cursor.name for client in clients]
        waiter(lambda: all(len(ids_by_client(metrics).get(name, [])) >= last_id
                           for name in names), 30, "every client to catch up")
        time.sleep(0.5)  # a duplicate would show up now
        report = delivery_report(metrics, last_id, names)
        with redis_server.client() as client:
            numsub = client.pubsub_numsub(f"{key}:published")[0][1]
        print(f"\nbroker faults: {report['clients']} clients, {EVENTS} publishes "
              f"({publisher.failed} failed and retried), ids 1..{last_id}, complete "
              f"{report['complete']}, duplicates {report['duplicates']}, missing "
              f"{report['missing']}, stream resets {report['stream_resets']}, faults at "
              f"{done}, NUMSUB {numsub}, {time.monotonic() - started:.1f} s")
        assert last_id >= EVENTS
        assert report["complete"] == CLIENTS, report
        assert report["duplicates"] == 0 and report["missing"] == 0
        assert report["stream_resets"] == 0  # AOF kept the stream id through the restart
        assert numsub == SERVERS
    finally:
        for client in clients:
            client.stop()
        for server in servers:
            server.stop()
        redis_server.stop()
        redis_server.remove_data()
