"""One fan-out, measured: hold N long polls on a server, publish one event, time every answer.

Notebook 05 (`helpers.scaling.fan_out`, `sweep`) and `make bench` (`bench.scenarios`) both run
this, with the load client of `helpers.loadclient`, against any `Peer`. Times are
`time.perf_counter()` differences in the measuring process. A fan-out is timed **from just
before the publish request is written** to the moment the last byte of a subscriber's response
is read: the same reference for every server, Nchan included (its messages carry no timestamp
of ours).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from helpers.loadclient import Cursor, Tally, close_all, open_pool, reopen
from helpers.metrics import percentile
from helpers.processes import rss_kib, threads
from helpers.processes import total_cpu_seconds as cpu_seconds
from helpers.scaling.peers import Peer

Say = Callable[[str], None]
HOLD_S = 120.0  # long polls are held this long at most: longer than any scenario round


def ms(seconds: float) -> float:
    """Seconds as milliseconds, rounded to the microsecond (how results files store times)."""
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


async def measure_fan_out(peer: Any, n: int, *, rounds: int = 3, timeout: float = 60.0,
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
            latencies.sort()
            result["rounds"].append({
                "delivered": delivered,
                "p50_ms": ms(percentile(latencies, 50)),
                "p99_ms": ms(percentile(latencies, 99)),
                "max_ms": ms(max(latencies, default=math.nan)),
                "span_ms": ms(finished - started),
                "server_cpu_s": round(server_cpu, 3),
                "client_cpu_s": round(client_cpu, 3),
                "all_held_after_s": round(held_after, 3),
                "reconnected": reconnected,
                "idle_cpu": round(idle_cpu, 3),
            })
            say(f"  round {round_no + 1}: {delivered}/{n} delivered, "
                f"p50 {ms(percentile(latencies, 50)):.0f} ms, "
                f"max {ms(max(latencies, default=math.nan)):.0f} ms")
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
