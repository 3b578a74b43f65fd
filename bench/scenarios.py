"""The benchmark's scenarios. Each takes a started peer and returns a JSON-ready dict.

Times are `time.perf_counter()` differences in the benchmark process. A fan-out or a delivery is
timed **from just before the publish request is written** to the moment the last byte of a
subscriber's response is read: the same reference for every server, Nchan included (its
messages carry no timestamp of ours).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.loadclient import (
    Connection,
    Cursor,
    HttpError,
    Tally,
    close_all,
    connect,
    open_pool,
    reopen,
)
from bench.peers import Peer
from helpers import metrics
from helpers.processes import rss_kib, threads
from helpers.processes import total_cpu_seconds as cpu_seconds

Say = Callable[[str], None]
HOLD_S = 120.0  # long polls are held this long at most: longer than any scenario round


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of unsorted `values` (`helpers.metrics.percentile`)."""
    return metrics.percentile(sorted(values), q)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


async def wait_for_waiting(peer: Peer, n: int, timeout: float, say: Say | None = None) -> int:
    """Poll the peer's own count until it holds `n` long polls; return the last count seen.

    Raises TimeoutError if it does not get there within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    shown = time.monotonic()
    while (held := await peer.waiting()) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{peer.label} held only {held} of {n} long polls after "
                               f"{timeout:g} s")
        if say is not None and time.monotonic() - shown > 2:
            say(f"  {held}/{n} held")
            shown = time.monotonic()
        await asyncio.sleep(0.05 if n < 1000 else 0.1)
    return held


async def publish_timed(peer: Any, message: str) -> tuple[float, asyncio.Future[Any]]:
    """Write a publish request and return (perf_counter just before the write, its reply)."""
    await peer.control.ready()
    raw = peer.publish_request(message)
    started = time.perf_counter()
    return started, peer.control.send_now(raw)


async def fan_out(peer: Any, n: int, *, rounds: int = 3, timeout: float = 60.0,
                  jitter: float = 0.0, say: Say = lambda _: None) -> dict[str, Any]:
    """Hold `n` long polls, publish one event, time every response; `rounds` times over.

    Each round reuses the connections (keep-alive) with the cursors the last round moved.
    Reports per round p50/p99/max in ms (from just before the publish), delivered/n, the
    server's RSS and threads idle and with `n` held, and `idle_cpu`: the server's CPU use
    (seconds per second) while the `n` polls were held and nothing happened. `jitter`: a
    random extra pause (0 to `jitter` s) before each publish, so that it falls at a random
    phase of a sleep loop's checks.
    """
    pids = peer.pids()
    rss_idle, threads_idle = rss_kib(pids), threads(pids)
    say(f"  opening {n} connections")
    pool = await open_pool(peer.host, peer.port, n,
                           progress=lambda done, total: say(f"  {done}/{total} connected")
                           if done % 2500 == 0 else None)
    result: dict[str, Any] = {"n": n, "rss_idle_kib": rss_idle, "threads_idle": threads_idle,
                              "rounds": []}
    try:
        cursors: list[Cursor] = [peer.cursor() for _ in range(n)]
        for round_no in range(rounds):
            # The kit's Flask server closes each connection after one answer: reconnect those.
            reconnected = await reopen(peer.host, peer.port, pool) if round_no else 0
            tally = Tally(pool, n)
            sent = time.perf_counter()
            futures = [c.send(cursor.poll(HOLD_S)) for c, cursor in zip(pool, cursors, strict=True)]
            await wait_for_waiting(peer, n, timeout, say)
            held_after = time.perf_counter() - sent
            # Let the server go idle, and see what holding the polls costs while nothing happens.
            idle_cpu, idle_from = cpu_seconds(pids), time.perf_counter()
            await asyncio.sleep(0.5 + random.uniform(0, jitter))
            idle_cpu = (cpu_seconds(pids) - idle_cpu) / (time.perf_counter() - idle_from)
            if round_no == 0:
                result["rss_held_kib"] = rss_kib(pids)
                result["threads_held"] = threads(pids)
            gc.collect()
            gc.disable()  # no collection pause of ours inside the timed window
            cpu_before, client_before = cpu_seconds(pids), time.process_time()
            try:
                started, published = await publish_timed(peer, f"fan-out {n}, round {round_no}")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(tally.all_in), timeout)
            finally:
                gc.enable()
            pending = [f for f in futures if not f.done()]
            finished = max((f.result().done_at for f in futures
                            if f.done() and not f.exception()), default=started)
            peer.published(await asyncio.wait_for(published, 10))
            server_cpu = cpu_seconds(pids) - cpu_before
            client_cpu = time.process_time() - client_before
            latencies, delivered = [], 0
            for future, cursor in zip(futures, cursors, strict=True):
                if future.done() and not future.exception():
                    reply = future.result()
                    if cursor.advance(reply) >= 1:
                        delivered += 1
                        latencies.append(reply.done_at - started)
            result["rounds"].append({
                "delivered": delivered,
                "p50_ms": _ms(percentile(latencies, 50)),
                "p99_ms": _ms(percentile(latencies, 99)),
                "max_ms": _ms(max(latencies, default=math.nan)),
                "span_ms": _ms(finished - started),
                "server_cpu_s": round(server_cpu, 3),
                "client_cpu_s": round(client_cpu, 3),
                "all_held_after_s": round(held_after, 3),
                "reconnected": reconnected,
                "idle_cpu": round(idle_cpu, 3),
            })
            say(f"  round {round_no + 1}: {delivered}/{n} delivered, "
                f"p50 {_ms(percentile(latencies, 50)):.0f} ms, "
                f"max {_ms(max(latencies, default=math.nan)):.0f} ms")
            if pending:
                break  # the connections are in an unknown state: do not reuse them
    finally:
        close_all(pool)
    rounds_ = result["rounds"]
    for key in ("p50_ms", "p99_ms", "max_ms"):
        result[key] = round(statistics.median(r[key] for r in rounds_), 3)
    result["delivered"] = min(r["delivered"] for r in rounds_)
    result["idle_cpu"] = round(statistics.median(r["idle_cpu"] for r in rounds_), 3)
    result["kib_per_held"] = round((result["rss_held_kib"] - rss_idle) / n, 2)
    return result


async def delivery_latency(peer: Any, events: int = 200, *, jitter: float = 0.005,
                           timeout: float = 30.0, say: Say = lambda _: None) -> dict[str, Any]:
    """One subscriber; `events` times: hold a poll, publish, time the delivery.

    `jitter`: a random pause (0 to `jitter` s) between "held" and the publish, so that the
    publish falls at a random phase of a sleep-loop server's check interval.
    """
    connection = await connect(peer.host, peer.port, "127.0.0.2")
    cursor = peer.cursor()
    latencies: list[float] = []
    try:
        for i in range(events):
            if not connection.usable:  # the server closed it after its last answer
                connection = await connect(peer.host, peer.port, "127.0.0.2")
            future = connection.send(cursor.poll(HOLD_S))
            await wait_for_waiting(peer, 1, timeout)
            await asyncio.sleep(random.uniform(0, jitter))
            started, published = await publish_timed(peer, f"latency {i}")
            reply = await asyncio.wait_for(future, timeout)
            peer.published(await asyncio.wait_for(published, 10))
            if cursor.advance(reply) >= 1:
                latencies.append(reply.done_at - started)
            if i % 50 == 49:
                say(f"  {i + 1}/{events} events, p50 so far "
                    f"{_ms(percentile(latencies, 50)):.2f} ms")
    finally:
        connection.close()
    return {"events": len(latencies), "p50_ms": _ms(percentile(latencies, 50)),
            "p99_ms": _ms(percentile(latencies, 99)),
            "max_ms": _ms(max(latencies, default=math.nan)),
            "mean_ms": _ms(statistics.fmean(latencies)) if latencies else math.nan}


async def throughput(peer: Any, connections: int = 50, seconds: float = 5.0,
                     say: Say = lambda _: None) -> dict[str, Any]:
    """Short-poll hits per second: `connections` keep-alive loops, each asking again at once.

    Every request is answered at once with one event. Also reports how busy the benchmark
    process itself was: near 100 % of a core, the client, not the server, set the pace.
    """
    raw = peer.short_poll()
    pool = await open_pool(peer.host, peer.port, connections)
    hits = failed = reconnects = 0
    stop_at = 0.0

    async def loop(connection: Connection) -> None:
        nonlocal hits, failed, reconnects
        while time.perf_counter() < stop_at:
            if not connection.usable:  # the server closed it after its last answer
                reconnects += 1
                connection = await connect(peer.host, peer.port, "127.0.0.2")
                pool.append(connection)
            try:
                reply = await connection.send(raw)
            except HttpError:
                failed += 1
                continue
            if reply.status == 200:
                hits += 1
            else:
                failed += 1

    pids = peer.pids()
    try:
        cpu_server, cpu_client = cpu_seconds(pids), time.process_time()
        started = time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(*(loop(c) for c in list(pool)))
        elapsed = time.perf_counter() - started
        cpu_server = cpu_seconds(pids) - cpu_server
        cpu_client = time.process_time() - cpu_client
    finally:
        close_all(pool)
    say(f"{hits / elapsed:,.0f} hits/s, server {100 * cpu_server / elapsed:.0f} % of a core, "
        f"client {100 * cpu_client / elapsed:.0f} %")
    return {"connections": connections, "seconds": round(elapsed, 3), "hits": hits,
            "failed": failed, "reconnects": reconnects, "hits_per_s": round(hits / elapsed, 1),
            "server_cpu_pct": round(100 * cpu_server / elapsed, 1),
            "client_cpu_pct": round(100 * cpu_client / elapsed, 1)}


#: Scenario 4's strategies: (name, server label in bench.runner.KIT_SERVERS, measure() settings)
STRATEGIES: list[tuple[str, str, dict[str, Any]]] = [
    ("short polling, every 1 s", "flask check=1.0s", {"strategy": "short", "interval": 1.0}),
    ("naive long poll, check 1.0 s", "flask check=1.0s", {"strategy": "long", "hold": 30.0}),
    ("asyncio long poll", "fastapi", {"strategy": "long", "hold": 30.0}),
]


async def requests_per_event(peer: Any, *, seconds: float, rate: float, clients: int = 5,
                             **settings: Any) -> dict[str, Any]:
    """Requests per delivered event for one strategy, with `helpers.measure` (the notebooks'
    own engine): `clients` clients, events published at about `rate` per second."""
    from helpers.experiment import measure

    summary = await asyncio.to_thread(measure, peer.server, seconds, rate=rate,
                                      clients=clients, **settings)
    keep = ("requests", "events", "requests_per_event", "empty_pct", "latency_ms_p50",
            "latency_ms_p99", "triggered", "missing", "duplicates", "errors")
    result = {key: summary[key] for key in keep}
    for key, value in result.items():
        if isinstance(value, float):
            result[key] = None if math.isnan(value) or math.isinf(value) else round(value, 3)
    return {"clients": clients, "rate": rate, "seconds": seconds, **result}
