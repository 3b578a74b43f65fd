"""Faults on purpose: break a running setup the ways production breaks it.

    restart_server(server)          # a deploy: held polls get 204, the port is down a moment
    crash_server(server)            # kill -9: held polls get no answer at all
    kill_clients(swarm, 10)         # ten clients die mid-request and come back
    cut_connections(proxy)          # the proxy drops every connection at once
    stall_server(server, 2.0)       # the server freezes for 2 s (SIGSTOP, then SIGCONT)
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from helpers.http import request
from helpers.launcher import Server
from helpers.processes import kill_process_group
from helpers.swarm import Swarm


def restart_server(server: Server, **changes: Any) -> float:
    """Restart `server` gracefully on the same port (SIGTERM, then start again).

    Held polls are answered 204 before it exits; requests sent while it is down are refused.
    `changes` are start-up options (e.g. `store=...`). Returns the seconds it was down.
    """
    started = time.monotonic()
    server.restart(**changes)
    return time.monotonic() - started


def crash_server(server: Server, *, restart: bool = False) -> None:
    """Kill `server` with SIGKILL, as a crash or an out-of-memory kill would: no goodbye.

    Held polls get no answer; their connections just close. With `restart`, start it again on
    the same port afterwards.
    """
    if server.process is not None and server.process.poll() is None:
        kill_process_group(server.process)  # the server leads its own group
    if restart:
        server.restart()


def kill_clients(swarm: Swarm, n: int = 10, *, restart: bool = True, down_for: float = 0.0,
                 rng: random.Random | None = None) -> list[str]:
    """Kill `n` random clients of `swarm` mid-request; with `restart`, each comes back after
    `down_for` seconds with the cursor it had. Returns their names."""
    return swarm.kill(n, restart=restart, down_for=down_for, rng=rng)


def cut_connections(proxy: Server) -> int:
    """Make a proxy started with `launch("proxy", ...)` drop every open connection at once.

    Returns how many client connections it closed. Every request in flight through it fails
    with a connection error, as during a proxy restart or a load balancer failover. Raises
    ServerUnavailable if the proxy does not answer, PollError if `proxy` is not a proxy.
    """
    cut: int = request("POST", proxy.url + "/_proxy/cut").json()["connections"]
    return cut


def proxy_stats(proxy: Server) -> dict[str, Any]:
    """The proxy's own counters: forwarded requests, 502s, 504s, cuts (`GET /_proxy/stats`).

    Raises ServerUnavailable if the proxy does not answer, PollError if `proxy` is not a proxy.
    """
    stats: dict[str, Any] = request("GET", proxy.url + "/_proxy/stats").json()
    return stats


def stall_server(server: Server, seconds: float = 2.0, *, wait: bool = True) -> None:
    """Freeze `server` for `seconds` (SIGSTOP, then SIGCONT): it neither reads nor answers.

    New connections still complete (the kernel accepts them into the listen queue) and then
    hang, which is what a stalled server looks like from outside. With `wait=False`, return at
    once and resume it from a timer (what the panel's button does).
    """
    if not 0 < seconds <= 60:
        raise ValueError("stall for more than 0 and at most 60 seconds")
    server.pause()
    if wait:
        try:
            time.sleep(seconds)
        finally:
            server.resume()
    else:
        timer = threading.Timer(seconds, server.resume)
        timer.daemon = True
        timer.start()
