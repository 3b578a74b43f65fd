"""Sections 1 to 3 of notebook 08: the lost-event bug, pub/sub alone, and the broker's fix.

    memory = launch_cluster(3)
    lost_event_bug(memory)                # 3 in-memory servers: events lost and duplicated
    relay = launch_cluster(3, **broker_options(redis, "relay"))
    pubsub_cut(redis, relay)              # notifications only: a cut subscription loses events
    shared = launch_cluster(3, **broker_options(redis))
    fanout(shared)                        # one log: every event to every client, and how fast

Each call takes a running cluster, so one cluster serves several measurements; each publishes
messages under a prefix of its own, and its clients start from the log's newest id.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Sequence
from typing import Any

from helpers.cluster import Cluster
from helpers.experiment import wait_until
from helpers.launcher import Server
from helpers.metrics import percentile
from helpers.redis_server import RedisServer
from helpers.sharing.audience import Audience, Publish, Publishing, median
from helpers.sharing.results import Latency, PubSubCut, Tally

HOLD_S = 10.0  # the clients' hold: longer than any run here, so each wait is a held poll
_runs = itertools.count(1)  # numbers each measurement's messages apart: "fix-3 event 7"


def broker_options(redis: RedisServer, mode: str = "log") -> dict[str, Any]:
    """Server options for a cluster on `redis`, under a key of its own.

    One Redis serves every section of the notebook; a fresh `--broker-key` per cluster keeps
    each cluster's events apart, as two applications sharing a Redis would. `mode="relay"`
    makes servers that only pass notifications on (pub/sub alone: the broken design).
    """
    options: dict[str, Any] = {"broker": redis.url,
                               "broker_key": f"nb08-{mode}-{uuid.uuid4().hex[:8]}"}
    if mode != "log":
        options["broker_mode"] = mode
    return options


def mode_of(cluster: Cluster) -> str:
    """"memory", "log" or "relay": how the cluster's servers keep their events."""
    options = cluster.servers[0].options
    if not options.get("broker"):
        return "memory"
    return str(options.get("broker_mode") or "log")


def prefix_for(name: str) -> str:
    return f"{name}-{next(_runs)} event"


def waiting(servers: Sequence[Server]) -> list[int]:
    """The polls each running server holds right now (0 for one that is not running)."""
    return [int(s.stats()["waiting"]) if s.running else 0 for s in servers]


def wait_held(servers: Sequence[Server], n: int, timeout: float = 10.0) -> int:
    """Wait until the servers hold `n` polls between them (or `timeout`); return how many."""
    deadline = time.monotonic() + timeout
    held = sum(waiting(servers))
    while held < n and time.monotonic() < deadline:
        time.sleep(0.05)
        held = sum(waiting(servers))
    return held


def wait_subscribed(servers: Sequence[Server], timeout: float = 5.0) -> bool:
    """Wait until every running broker server is subscribed to its channel (or `timeout`)."""
    return wait_until(lambda: all(s.stats()["broker"]["subscribed"] for s in servers
                                  if s.running), timeout, interval=0.05)


def newest_id(cluster: Cluster) -> int:
    """Where new clients start: the shared log's newest id, or 0 for servers with own logs.

    On separate logs no one cursor fits every server, so the clients start from the beginning,
    as the article's clients do.
    """
    if mode_of(cluster) == "memory":
        return 0
    live = next(s for s in cluster.servers if s.running)
    return int(live.stats()["last_event_id"])


def audience_for(cluster: Cluster, clients: int, name: str = "client") -> Audience:
    """`clients` long polls through the cluster's gateway, from its newest id on."""
    return Audience(cluster.url, clients, hold=HOLD_S, name=name,
                    last_event_id=newest_id(cluster))


def deliver(cluster: Cluster, *, clients: int = 30, events: int = 20, gap_s: float = 0.05,
            settle_s: float = 3.0, held_s: float = 5.0,
            name: str = "run") -> tuple[Tally, Audience, list[Publish]]:
    """`clients` long polls through the gateway; `events` messages published through it.

    Returns the tally, the audience (for its timings) and what was published. Waits up to
    `held_s` before the first publish for every client to be held, and up to `settle_s` after
    the last for every client to have every message.
    """
    with audience_for(cluster, clients) as audience:
        wait_held(cluster.servers, clients, timeout=held_s)
        publishing = Publishing(cluster.url, prefix=prefix_for(name))
        try:
            sent = publishing.many(events, gap_s)
        finally:
            publishing.close()
        audience.wait_for(sent, timeout=settle_s)
    return audience.tally(sent), audience, sent


def lost_event_bug(cluster: Cluster, *, clients: int = 30, events: int = 20,
                   settle_s: float = 1.5) -> Tally:
    """`clients` long polls and `events` publishes through a cluster of in-memory servers.

    Each publish reaches the one server the gateway sent it to; the others never hear of it.
    Clients whose cursor keeps jumping between servers are rarely all held at once, so this
    waits only briefly for them before publishing.
    """
    tally, _, _ = deliver(cluster, clients=clients, events=events, settle_s=settle_s,
                          held_s=1.0, name="bug")
    return tally


def fanout(cluster: Cluster, *, clients: int = 30, events: int = 20,
           gap_s: float = 0.1) -> Latency:
    """Deliver `events` to `clients` through `cluster` and time the fan-out (see `Latency`)."""
    tally, audience, sent = deliver(cluster, clients=clients, events=events, gap_s=gap_s,
                                    settle_s=10.0, name="fix")
    fanouts = audience.fanout_ms(sent)
    latencies = audience.latencies_ms(sent)
    return Latency(servers=len(cluster.servers), clients=clients, events=len(sent),
                   fanout_ms_median=median(fanouts),
                   fanout_ms_max=fanouts[-1] if fanouts else float("nan"),
                   p50_ms=median(latencies), p95_ms=percentile(latencies, 95), tally=tally)


def pubsub_cut(redis: RedisServer, cluster: Cluster, *, clients: int = 12, before: int = 5,
               during: int = 10, after: int = 5, settle_s: float = 2.0) -> PubSubCut:
    """Publish while Redis has cut every server's subscription (`CLIENT KILL TYPE pubsub`).

    On a relay cluster the servers only pass on the notifications they hear (pub/sub alone);
    on a log cluster they read the stored log from each cursor. `during` events are published
    while Redis keeps the servers from subscribing again (`RedisServer.pubsub_outage`): a
    listener reconnects within 50 ms, sooner than a busy machine may send the next publish.
    Then the servers subscribe again, and `after` events follow.
    """
    with audience_for(cluster, clients) as audience:
        wait_held(cluster.servers, clients, timeout=5.0)
        publishing = Publishing(cluster.url, prefix=prefix_for("cut"))
        try:
            sent = publishing.many(before, 0.05)
            audience.wait_for(sent, timeout=3.0)
            with redis.pubsub_outage() as cut:
                sent += publishing.many(during)
            wait_subscribed(cluster.servers, timeout=5.0)
            wait_held(cluster.servers, clients, timeout=2.0)
            sent += publishing.many(after, 0.05)
        finally:
            publishing.close()
        audience.wait_for(sent, timeout=settle_s)
        tally = audience.tally(sent)
    return PubSubCut(mode=mode_of(cluster), cut_subscriptions=cut, published_during_cut=during,
                     tally=tally)
