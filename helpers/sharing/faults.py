"""Section 4 of notebook 08: a server killed mid-hold, Redis restarted, and the gateway's door.

    kill_mid_hold(shared)                 # its clients come back through the gateway, lose nothing
    redis_restarts()                      # what a crash of Redis keeps, with AOF and without
    gateway_guards(one.servers)           # 401 without the token, 429 + Retry-After past the limit
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import Any, TypeVar

import requests

from helpers.cluster import Cluster
from helpers.errors import PollingLabError
from helpers.http import request, session_for
from helpers.launcher import Server, launch
from helpers.processes import kill_process_group
from helpers.redis_server import RedisServer, launch_redis
from helpers.sharing.audience import Audience, Publish, Publishing
from helpers.sharing.lessons import audience_for, prefix_for, wait_held, waiting
from helpers.sharing.results import GatewayGuards, KilledServer, RedisRestart
from helpers.swarm import Swarm

T = TypeVar("T")

WATCHER_HOLD_S = 1.0


def gateway_stats(cluster: Cluster) -> dict[str, Any]:
    """The gateway's own counters, `/_proxy/stats`."""
    stats: dict[str, Any] = request("GET", cluster.url + "/_proxy/stats").json()
    return stats


def upstream_health(cluster: Cluster) -> list[bool]:
    """Whether the gateway has each server in its rotation, from its `/_proxy/stats`."""
    return [bool(u["healthy"]) for u in gateway_stats(cluster)["upstreams"]]


def kill_mid_hold(cluster: Cluster, *, clients: int = 30, events: int = 10,
                  victim: int = 0) -> KilledServer:
    """Kill server `victim` (SIGKILL) while it holds polls, then publish through the gateway.

    Its held polls are cut. A gateway that may resend a GET sends each to a live server
    (`resent_by_gateway`); one that answers 502 leaves the client to ask again. Either way the
    poll carries its cursor, and the live server reads the shared log after it. The server
    is started again at the end, so the cluster can be used again.
    """
    with audience_for(cluster, clients) as audience:
        wait_held(cluster.servers, clients)
        held = waiting(cluster.servers)[victim]
        resent_before = int(gateway_stats(cluster).get("retried", 0))
        killed_at = time.monotonic()
        cluster.kill(victim)
        out_s = math.nan
        while time.monotonic() < killed_at + 5:
            if not upstream_health(cluster)[victim]:
                out_s = time.monotonic() - killed_at
                break
            time.sleep(0.02)
        publishing = Publishing(cluster.url, prefix=prefix_for("kill"))
        try:
            sent = publishing.many(events, 0.05)
        finally:
            publishing.close()
        audience.wait_for(sent, timeout=10.0)
        recovered_s = time.monotonic() - killed_at
        tally = audience.tally(sent)
        resent = int(gateway_stats(cluster).get("retried", 0)) - resent_before
    cluster.restart(victim)
    return KilledServer(held_on_killed=held, out_of_rotation_s=out_s, published_after=len(sent),
                        recovered_s=recovered_s, resent_by_gateway=resent, tally=tally)


def _log_messages(url: str, timeout: float = 10.0) -> list[str]:
    """Every message in the server's log, once it (and its broker) answers again."""
    events = _when_back(lambda session: request(
        "GET", url + "/events", session=session, params={"last_event_id": 0, "limit": 1000}
    ).json(), url, timeout)
    return [str(e["message"]) for e in events]


def _publish_when_back(url: str, message: str, timeout: float) -> dict[str, Any]:
    """Publish `message` as soon as the server (and its broker) accepts it again."""
    event: dict[str, Any] = _when_back(lambda session: request(
        "POST", url + "/trigger_event", session=session, json={"message": message}
    ).json()["event"], url, timeout)
    return event


def _when_back(call: Callable[[requests.Session], T], url: str, timeout: float) -> T:
    """`call(session)` again every 50 ms while it raises PollingLabError (a refused connection,
    a 503 while the broker is away), for up to `timeout` seconds. Right after a Redis restart a
    call can still fail after one succeeded: under make unit's load, the log's read that follows
    the first publish was a 503 once."""
    deadline = time.monotonic() + timeout
    session = session_for(url)
    try:
        while True:
            try:
                return call(session)
            except PollingLabError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        session.close()


def redis_restart(appendonly: bool, *, crash: bool = True, events: int = 5,
                  flushed_s: float = 1.5) -> RedisRestart:
    """Publish `events`, wait `flushed_s`, restart Redis, and see what the server still has.

    A Redis of its own, with append-only persistence (`appendonly yes`, `appendfsync everysec`)
    or with none. With `crash`, Redis is killed (SIGKILL: no chance to flush anything) and
    started again; otherwise it is stopped cleanly (SIGTERM, which flushes the file first).
    `flushed_s` > 1 s lets everysec write the events to disk before the crash.
    """
    redis = launch_redis(appendonly=appendonly)
    try:
        # a log folder of its own: redis_restarts() runs two of these at once
        logs = tempfile.mkdtemp(prefix="polling-lab-08-")
        with launch("asyncio", broker=redis.url, log_dir=logs) as server:
            return _restart_under(redis, server, appendonly, crash, events, flushed_s)
    finally:
        redis.stop()


def redis_restarts(settings: Sequence[bool] = (True, False), **options: Any
                   ) -> list[RedisRestart]:
    """`redis_restart(appendonly)` for each of `settings`, all at once, each on its own Redis.

    They share nothing but this machine, and most of their time is waiting, so running them
    side by side shortens the wait without changing what they measure.
    """
    with ThreadPoolExecutor(len(settings)) as pool:
        return list(pool.map(lambda aof: redis_restart(aof, **options), settings))


def after_publish(event: dict[str, Any]) -> Publish:
    """The event a plain publish returned, as a `Publish` an Audience can wait for."""
    return Publish(str(event["message"]), int(event["id"]), float(event["timestamp"]), "?")


def _restart_under(redis: RedisServer, server: Server, appendonly: bool, crash: bool,
                   events: int, flushed_s: float) -> RedisRestart:
    """`redis_restart` once Redis and its server run."""
    # A short hold, so the watcher polls often: a held poll is answered with the new stream
    # once the server adopts it, and every poll after that shows where the log stands.
    watcher = Audience(server.url, 1, hold=WATCHER_HOLD_S, name="watcher").start()
    try:
        publishing = Publishing(server.url, prefix="before")
        sent = publishing.many(events, 0.02)
        publishing.close()
        watcher.wait_for(sent, timeout=3.0)
        stream_before = server.health()["stream"]
        time.sleep(flushed_s)
        restarted = time.monotonic()
        if crash and redis.process is not None:
            kill_process_group(redis.process)  # a power cut, as far as Redis can tell
        redis.restart()  # (stopping a process that is already dead just reaps it)
        after = _publish_when_back(server.url, "after the restart", timeout=15.0)
        down_s = time.monotonic() - restarted
        watcher.wait_for([after_publish(after)], timeout=5.0)  # it follows the log as it is now
        kept = set(_log_messages(server.url))
        stream_after = server.health()["stream"]
    finally:
        watcher.stop()
    return RedisRestart(appendonly=appendonly, crashed=crash, published_before=len(sent),
                        survived=sum(p.message in kept for p in sent),
                        stream_before=stream_before, stream_after=stream_after,
                        first_id_after=int(after["id"]), down_s=down_s,
                        client_stream_resets=watcher.metrics.summary()["stream_resets"])


def gateway_guards(servers: Sequence[Server], *, token: str = "s3cret",
                   rate_limit: float = 20.0, burst: int = 60,
                   poll_s: float = 2.0) -> GatewayGuards:
    """A gateway of its own in front of `servers`, with a token and a rate limit, met by plain
    requests and by a kit client.

    A publish without the token, then with it; `burst` reads as fast as one connection sends
    them; then a swarm short-polling as fast as it may for `poll_s` seconds, to see that it
    waits out each 429's `Retry-After` and still receives the events.
    """
    with launch("proxy", upstream=[s.url for s in servers], token=token,
                rate_limit=rate_limit) as gateway:
        url = gateway.url
        with requests.Session() as session:
            session.trust_env = False
            anonymous = session.post(url + "/trigger_event", json={"message": "hi"}, timeout=5)
            signed = session.post(url + "/trigger_event", json={"message": "hi"}, timeout=5,
                                  headers={"Authorization": f"Bearer {token}"})
            reading = session.get(url + "/events", timeout=5)
            time.sleep(1.0)  # the bucket refills before the burst
            answers = [session.get(url + "/events", timeout=5) for _ in range(burst)]
        limited = [a for a in answers if a.status_code == 429]
        retry_after = float(limited[0].headers.get("Retry-After", "nan")) if limited else math.nan
        time.sleep(retry_after if not math.isnan(retry_after) else 1.0)
        with Swarm(url, 1, "short", interval=0.01, record=True, name="eager") as swarm:
            # The publisher says who it is: without X-Client-Id it would share the swarm's
            # bucket (every client here comes from 127.0.0.1) and be refused too.
            publishing = Publishing(url, token=token, prefix="guarded", client_id="publisher")
            time.sleep(poll_s / 2)
            sent = publishing.many(3, 0.05)
            publishing.close()
            time.sleep(poll_s / 2)
        attempts = sorted(swarm.attempts, key=lambda a: a.sent_at)
        waits = [b.sent_at - a.sent_at for a, b in pairwise(attempts)
                 if a.status == 429]
        got = {d.event_id for d in swarm.metrics.deliveries}
    return GatewayGuards(without_token=anonymous.status_code, with_token=signed.status_code,
                         read_without_token=reading.status_code, burst=burst,
                         limited=len(limited), retry_after_s=retry_after,
                         client_429s=len(waits), client_min_wait_s=min(waits, default=math.nan),
                         client_events=sum(p.id in got for p in sent))
