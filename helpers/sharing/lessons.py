"""Sections 1 to 3 of notebook 08: the lost-event bug, pub/sub alone, and the broker's fix.

    lost_event_bug()                      # 3 in-memory servers: events lost and duplicated
    pubsub_cut(redis, "relay")            # notifications only: a cut subscription loses events
    fanout(redis, servers=3)              # the broker: every event to every client, and how fast
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from helpers.cluster import Cluster, launch_cluster
from helpers.launcher import Server
from helpers.metrics import percentile
from helpers.redis_server import RedisServer
from helpers.sharing.audience import Audience, Publish, Publishing, median
from helpers.sharing.results import Latency, PubSubCut, Tally

HOLD_S = 10.0  # the clients' hold: longer than any run here, so each wait is a held poll


def broker_options(redis: RedisServer, mode: str = "log") -> dict[str, Any]:
    """Server options for a cluster on `redis`, under a key of its own.

    One Redis serves every section of the notebook; a fresh `--broker-key` per cluster keeps
    each section's events apart, as two applications sharing a Redis would.
    """
    options: dict[str, Any] = {"broker": redis.url,
                               "broker_key": f"nb08-{mode}-{uuid.uuid4().hex[:8]}"}
    if mode != "log":
        options["broker_mode"] = mode
    return options


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


def deliver(cluster: Cluster, *, clients: int = 30, events: int = 20, gap_s: float = 0.05,
            settle_s: float = 3.0, held_s: float = 5.0,
            prefix: str = "event") -> tuple[Tally, Audience, list[Publish]]:
    """`clients` long polls through the gateway; `events` messages published through it.

    Returns the tally, the audience (for its timings) and what was published. Waits up to
    `settle_s` after the last publish for every client to have every message, and up to
    `held_s` before the first for every client to be held.
    """
    with Audience(cluster.url, clients, hold=HOLD_S) as audience:
        wait_held(cluster.servers, clients, timeout=held_s)
        publishing = Publishing(cluster.url, prefix=prefix)
        try:
            sent = publishing.many(events, gap_s)
        finally:
            publishing.close()
        audience.wait_for(sent, timeout=settle_s)
    return audience.tally(sent), audience, sent


def lost_event_bug(servers: int = 3, *, clients: int = 30, events: int = 20,
                   settle_s: float = 2.0) -> Tally:
    """Three (or `servers`) in-memory servers behind the gateway: what do 30 clients get?

    Each publish reaches the one server the gateway sent it to; the others never hear of it.
    """
    with launch_cluster(servers) as cluster:
        # Clients whose cursor keeps jumping between servers are rarely all held at once: wait
        # only briefly for them before publishing.
        tally, _, _ = deliver(cluster, clients=clients, events=events, settle_s=settle_s,
                              held_s=1.5)
    return tally


def latency_of(cluster: Cluster, *, clients: int, events: int, gap_s: float = 0.1) -> Latency:
    """Deliver `events` to `clients` through `cluster` and time the fan-out (see `Latency`)."""
    tally, audience, sent = deliver(cluster, clients=clients, events=events, gap_s=gap_s,
                                    settle_s=10.0)
    fanouts = audience.fanout_ms(sent)
    latencies = audience.latencies_ms(sent)
    return Latency(servers=len(cluster.servers), clients=clients, events=len(sent),
                   fanout_ms_median=median(fanouts),
                   fanout_ms_max=fanouts[-1] if fanouts else float("nan"),
                   p50_ms=median(latencies),
                   p95_ms=percentile(latencies, 95), tally=tally)


def fanout(redis: RedisServer | None, servers: int = 3, *, clients: int = 30,
           events: int = 20) -> Latency:
    """`servers` behind the gateway, on the broker `redis` (None: in memory, one server only)."""
    if redis is None and servers != 1:
        raise ValueError("servers that keep their own logs lose events; give them a broker")
    options = broker_options(redis) if redis is not None else {}
    with launch_cluster(servers, **options) as cluster:
        return latency_of(cluster, clients=clients, events=events)


def pubsub_cut(redis: RedisServer, mode: str = "relay", *, servers: int = 3, clients: int = 12,
               before: int = 5, during: int = 10, after: int = 5) -> PubSubCut:
    """Publish while Redis cuts every server's subscription (`CLIENT KILL TYPE pubsub`).

    `mode="relay"` runs servers that only pass on the notifications they hear (pub/sub alone);
    `mode="log"` the kit's broker, which reads its stored log from the cursor. `during` events
    are published at once after the cut, before the servers can subscribe again.
    """
    with launch_cluster(servers, **broker_options(redis, mode)) as cluster, \
            Audience(cluster.url, clients, hold=HOLD_S) as audience:
        wait_held(cluster.servers, clients, timeout=5.0)
        publishing = Publishing(cluster.url)
        try:
            sent = publishing.many(before, 0.05)
            audience.wait_for(sent, timeout=3.0)
            cut = redis.kill_pubsub()
            sent += publishing.many(during)
            time.sleep(1.0)  # the servers notice, and subscribe again
            wait_held(cluster.servers, clients, timeout=3.0)
            sent += publishing.many(after, 0.05)
        finally:
            publishing.close()
        audience.wait_for(sent, timeout=3.0)
        tally = audience.tally(sent)
    return PubSubCut(mode=mode, cut_subscriptions=cut, published_during_cut=during, tally=tally)
