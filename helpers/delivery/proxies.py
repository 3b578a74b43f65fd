"""Notebook 07's buffering proxy: what a proxy that buffers does to SSE, and not to a long poll.

A proxy such as nginx collects an upstream's answer into a buffer before it passes it on
(`proxy_buffering on`). A long poll's answer is complete, so buffering it costs nothing. An SSE
stream never ends, so its events wait in the buffer until it fills. The kit's server sends
`X-Accel-Buffering: no`, which nginx (and the bundled proxy's `--buffering on`) honours; a proxy
that ignores it (`--buffering force`) shows what happens without it.

Measured, not modelled: the bundled proxy in each mode in front of one real server, the kit's
`SSEClient` and `LongPollClient` through it, events published on the server itself, and the
latency of each from the event's own timestamp.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from helpers.delivery.lesson import TITLES, Style, caught_up, client_for, publish_at
from helpers.experiment import wait_until
from helpers.launcher import Server, launch_all
from helpers.metrics import Metrics, percentile

Buffering = Literal["off", "on", "force"]
MODES: tuple[Buffering, ...] = ("off", "on", "force")
MEANING: dict[Buffering, str] = {
    "off": "no buffering",
    "on": "buffering, honours X-Accel-Buffering: no",
    "force": "buffering, ignores the header",
}
BURST_GAP_S = 0.005  # arrivals closer than this are one burst: they came in one read
SETTLE_S = 1.5  # after the last publish, how long the clients get to receive what they will


@dataclass(frozen=True)
class ProxyRow:
    """One client style through one buffering mode of the proxy."""

    buffering: Buffering
    style: Style
    published: int
    received: int  # the rest were still in the proxy's buffer when the run ended
    p50_ms: float  # from each event's own timestamp to its arrival at the client
    p95_ms: float
    max_ms: float
    bursts: int  # groups of events that arrived together (one per event when unbuffered)
    arrivals: tuple[float, ...]  # seconds after the first publish, one per received event

    @property
    def title(self) -> str:
        return f"{TITLES[self.style]}, proxy buffering {self.buffering}"


def bursts(arrivals: Sequence[float], gap: float = BURST_GAP_S) -> int:
    """How many groups `arrivals` (sorted seconds) form, counting a new one after each `gap`."""
    return sum(1 for i, t in enumerate(arrivals) if i == 0 or t - arrivals[i - 1] > gap)


def through_buffering_proxies(server: Server, modes: Sequence[Buffering] = MODES,
                              events: int = 60, rate: float = 20.0,
                              styles: Sequence[Style] = ("long", "sse")) -> list[ProxyRow]:
    """For each mode, a proxy in front of `server`, one client per style through it, and
    `events` events published on the server at `rate` per second."""
    rows: list[ProxyRow] = []
    # The proxies start side by side; each mode is then measured alone, through its own.
    proxies = launch_all([("proxy", {"upstream": server.url, "buffering": mode})
                          for mode in modes])
    try:
        for mode, proxy in zip(modes, proxies, strict=True):
            rows += _one_mode(server, proxy, mode, events, rate, styles)
    finally:
        for proxy in proxies:
            proxy.stop()
    return rows


def _one_mode(server: Server, proxy: Server, mode: Buffering, events: int, rate: float,
              styles: Sequence[Style]) -> list[ProxyRow]:
    start = server.stats()["last_event_id"]
    clients = {style: client_for(style, proxy.url, last_event_id=start, metrics=Metrics()).start()
               for style in styles}
    try:
        wait_until(lambda: server.stats()["waiting"] + server.stats()["streams"]
                   >= len(styles), 10)
        time.sleep(0.1)
        began = time.time()  # the clock of the events' timestamps and of their arrivals
        publish_at(server, rate, events)
        caught_up(list(clients.values()), start + events, SETTLE_S)
    finally:
        for client in clients.values():
            client.stop()
    rows = []
    for style, client in clients.items():
        deliveries = client.metrics.latencies_ms()  # (received_at, latency ms) per event
        arrivals = sorted(received - began for received, _ in deliveries)
        latencies = sorted(latency for _, latency in deliveries)
        rows.append(ProxyRow(
            mode, style, events, len(latencies), percentile(latencies, 50),
            percentile(latencies, 95), latencies[-1] if latencies else float("nan"),
            bursts(arrivals), tuple(arrivals)))
    return rows
