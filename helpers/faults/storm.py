"""A reconnect storm, measured: restart a server under hundreds of held polls, time the way back.

    storm = reconnect_storm(server, 500, backoff="full-jitter")
    storm.summary()                 # when clients came back, and the peak request rate
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from helpers.faults.actions import crash_server
from helpers.launcher import Server
from helpers.metrics import percentile
from helpers.swarm import Backoff, Swarm


@dataclass
class Storm:
    """What `reconnect_storm()` measured. Times are seconds after the restart began."""

    backoff: str
    clients: int
    down_s: float  # how long the restart took (stop + start)
    reconnect_s: list[float]  # per client: when its first successful request after it was sent
    answered_s: list[float]  # when each request the server answered was sent
    refused_s: list[float]  # when each request that got no answer was sent
    not_reconnected: int = 0
    bin_s: float = 0.1

    def peak_reconnect_rate(self) -> float:
        """The most reconnections in any `bin_s` window, per second."""
        return max(rate_per_bin(self.reconnect_s, self.bin_s), default=0) / self.bin_s

    def peak_request_rate(self) -> float:
        """The most requests the server answered in any `bin_s` window, per second."""
        return max(rate_per_bin(self.answered_s, self.bin_s), default=0) / self.bin_s

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.reconnect_s)
        return {
            "backoff": self.backoff,
            "clients": self.clients,
            "reconnected": len(ordered),
            "not_reconnected": self.not_reconnected,
            "down_s": self.down_s,
            "first_reconnect_s": ordered[0] if ordered else float("nan"),
            "median_reconnect_s": percentile(ordered, 50),
            "last_reconnect_s": ordered[-1] if ordered else float("nan"),
            "peak_reconnects_per_s": self.peak_reconnect_rate(),
            "peak_requests_per_s": self.peak_request_rate(),
            "refused_attempts": len(self.refused_s),
        }


def rate_per_bin(times: Sequence[float], bin_s: float) -> list[int]:
    """How many of `times` (seconds, >= 0) fall into each window of `bin_s` seconds."""
    if not times:
        return []
    counts = [0] * (int(max(times) / bin_s) + 1)
    for t in times:
        if t >= 0:
            counts[int(t / bin_s)] += 1
    return counts


def reconnect_storm(server: Server, clients: int = 500, *, backoff: Backoff = "full-jitter",
                    hold: float = 30.0, backoff_base: float = 0.1, backoff_cap: float = 5.0,
                    downtime: float = 2.0, hard: bool = False, timeout: float = 20.0) -> Storm:
    """Restart `server` under `clients` held long polls and time every client's way back.

    The server stays down for at least `downtime` seconds (a real deploy takes a while). A
    client's reconnect time is when it sent its first successful request after a failure that
    followed the restart, relative to the moment the restart began. `hard` crashes the server
    (SIGKILL) instead of stopping it gracefully. An in-memory server that already holds events
    is restarted once first, so that it starts empty. The swarm is stopped before returning.
    """
    if not server.options.get("store") and server.stats()["last_event_id"]:
        server.restart()  # an empty in-memory log: after the crash, one event answers every poll
    cursor = server.stats()["last_event_id"]
    swarm = Swarm(server.url, clients, "long", hold=hold, backoff=backoff, record=True,
                  backoff_base=backoff_base, backoff_cap=backoff_cap, name=f"storm-{backoff}",
                  last_event_id=cursor)
    with swarm:
        deadline = time.monotonic() + timeout
        while server.stats()["waiting"] < clients and time.monotonic() < deadline:
            time.sleep(0.05)
        began = time.time()
        if hard:
            crash_server(server)
        else:
            server.stop()
        time.sleep(max(0.0, began + downtime - time.time()))
        server.restart()
        down_s = time.time() - began
        # A held poll is known to have succeeded only when it is answered: once every client
        # is held again, publish until an id passes their cursor, which answers them all, and
        # each answer records its send time.
        deadline = time.monotonic() + timeout
        while server.stats()["waiting"] < clients and time.monotonic() < deadline:
            time.sleep(0.05)
        while server.trigger("everyone is back")["id"] <= cursor:
            pass
        deadline = time.monotonic() + 5
        while (len(_reconnects(swarm.attempts, began)) < clients
               and time.monotonic() < deadline):
            time.sleep(0.05)
    attempts = list(swarm.attempts)
    reconnects = _reconnects(attempts, began)
    later = [a for a in attempts if a.sent_at >= began]
    return Storm(
        backoff=backoff, clients=clients, down_s=down_s,
        reconnect_s=sorted(t - began for t in reconnects.values()),
        answered_s=sorted(a.sent_at - began for a in later if a.status),
        refused_s=sorted(a.sent_at - began for a in later if not a.status),
        not_reconnected=clients - len(reconnects),
    )


def _reconnects(attempts: Sequence[Any], began: float) -> dict[str, float]:
    """Per client, the send time of its first success after its first failure after `began`."""
    failed_at: dict[str, float] = {}
    back_at: dict[str, float] = {}
    for a in sorted(list(attempts), key=lambda a: a.sent_at):
        if a.sent_at < began or a.client in back_at:
            continue
        if not a.ok:
            failed_at.setdefault(a.client, a.sent_at)
        elif a.client in failed_at:
            back_at[a.client] = a.sent_at
    return back_at
