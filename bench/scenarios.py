"""The benchmark's scenarios. Each takes a started peer and returns a JSON-ready dict.

The fan-out (scenarios 1 and 3) is notebook 05's too, so it lives with that lesson, in
`helpers.scaling.fanout.measure_fan_out`; the others are the benchmark's own. Times are
`time.perf_counter()` differences in the benchmark process. A delivery is timed, as a fan-out
is, **from just before the publish request is written** to the moment the last byte of the
subscriber's response is read: the same reference for every server, Nchan included (its
messages carry no timestamp of ours).
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import time
from typing import Any

from helpers.loadclient import Connection, HttpError, close_all, connect, open_pool
from helpers.metrics import percentile
from helpers.processes import total_cpu_seconds as cpu_seconds
from helpers.scaling.fanout import (
    HOLD_S,
    Say,
    ms,
    publish_timed,
    wait_for_waiting,
)


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
                    f"{ms(percentile(sorted(latencies), 50)):.2f} ms")
    finally:
        connection.close()
    latencies.sort()
    return {"events": len(latencies), "p50_ms": ms(percentile(latencies, 50)),
            "p99_ms": ms(percentile(latencies, 99)),
            "max_ms": ms(max(latencies, default=math.nan)),
            "mean_ms": ms(statistics.fmean(latencies)) if latencies else math.nan}


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
