"""Notebook 07's measurements: long polling, SSE and WebSocket on one event stream.

Every function here starts real clients against a real server, publishes real events and
returns typed rows of what it measured (latency from each event's own timestamp, bytes counted
at the socket by `WireCounter`, the server's own CPU and memory). Nothing is modelled.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from websockets.sync.client import connect

from helpers.clients import LongPollClient, PollClient
from helpers.delivery.wire import WireCounter
from helpers.errors import PollingLabError
from helpers.experiment import wait_until
from helpers.launcher import Server, launch, launch_all
from helpers.metrics import Metrics
from helpers.sse import SSEParser
from helpers.streams import SSEClient, StreamClient, WebSocketClient
from helpers.swarm import Swarm

Style = Literal["long", "sse", "ws"]
STYLES: tuple[Style, ...] = ("long", "sse", "ws")
TITLES: dict[Style, str] = {"long": "long polling", "sse": "SSE", "ws": "WebSocket"}
IDLE_S = 1.0  # how long connection_costs watches the server's CPU with nothing happening
CROWD_S = 60.0  # how long connection_costs waits for its whole crowd to connect
HOLD_S = 30.0  # the long-poll clients' hold: longer than any run, so no 204 muddies a count


def client_for(style: Style, url: str, **options: Any) -> LongPollClient | StreamClient:
    """The kit's client for one delivery style (not started)."""
    if style == "long":
        return LongPollClient(url, hold=HOLD_S, **options)
    if style == "sse":
        return SSEClient(url, **options)
    return WebSocketClient(url, **options)


def publish_at(server: Server, rate: float, count: int) -> None:
    """Publish `count` events evenly spaced at `rate` per second (catching up if late)."""
    started = time.monotonic()
    for i in range(count):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        server.trigger(f"event {i + 1} at {rate:g}/s")


def caught_up(clients: Sequence[PollClient | StreamClient], last_id: int,
              timeout: float) -> bool:
    """Wait until every client's cursor has reached `last_id`."""
    return wait_until(lambda: all(c.last_event_id >= last_id for c in clients), timeout)


@dataclass(frozen=True)
class RateRow:
    """One delivery style at one publish rate: what each event cost and how late it came."""

    style: Style
    rate: float  # events published per second
    events: int  # delivered
    p50_ms: float
    p95_ms: float
    p99_ms: float
    missing: int
    duplicates: int
    up_per_event: float  # bytes client -> server per delivered event, headers and framing in
    down_per_event: float  # bytes server -> client per delivered event
    requests_per_event: float
    connections_per_event: float
    connect_bytes: int  # bytes both ways to open the connection, before the first event


def compare_at_rates(server: Server, rates: Sequence[float] = (1, 10, 100),
                     seconds: float | Callable[[float], float] = 5.0) -> list[RateRow]:
    """One client of each style, each behind its own `WireCounter`, on the same events.

    For each rate, `seconds` (or `seconds(rate)`) of evenly spaced events are published once
    and all three clients receive them; a row per style and rate comes back.
    """
    rows: list[RateRow] = []
    for rate in rates:
        duration = seconds(rate) if callable(seconds) else seconds
        count = max(3, round(rate * duration))
        start = server.stats()["last_event_id"]
        wires = {style: WireCounter(server.url).start() for style in STYLES}
        clients = {style: client_for(style, wires[style].url, last_event_id=start).start()
                   for style in STYLES}
        try:
            wait_until(lambda: server.stats()["waiting"] >= 1
                       and server.stats()["streams"] >= 2, 10)
            time.sleep(0.05)
            opened = {style: wire.counts() for style, wire in wires.items()}
            for wire in wires.values():
                wire.reset()
            for client in clients.values():
                client.metrics.reset()
            publish_at(server, rate, count)
            caught_up(list(clients.values()), start + count, 10)
            for style, client in clients.items():
                m, sent = client.metrics.summary(), wires[style].counts()
                delivered = max(m["events"], 1)
                rows.append(RateRow(
                    style, rate, m["events"], m["latency_ms_p50"], m["latency_ms_p95"],
                    m["latency_ms_p99"], m["missing"], m["duplicates"], sent.up / delivered,
                    sent.down / delivered,
                    (m["requests"] if style == "long" else 0) / delivered,
                    (opened[style].connections + sent.connections) / delivered,
                    opened[style].up + opened[style].down))
        finally:
            for client in clients.values():
                client.stop()
            for wire in wires.values():
                wire.stop()
    return rows


@dataclass(frozen=True)
class CostRow:
    """`connections` clients of one style held open, then fed `events` events."""

    style: Style
    connections: int
    kib_per_connection: float  # server RSS growth per open connection
    idle_cpu_pct: float  # server CPU while every connection is open and nothing happens
    cpu_us_per_delivery: float  # server CPU time per event delivered to one client
    deliveries: int
    missing: int
    duplicates: int
    fanout_p50_ms: float
    fanout_p99_ms: float


def connection_costs(style: Style, connections: int = 1000, events: int = 10,
                     rate: float = 10, **server_options: Any) -> CostRow:
    """Hold `connections` of `style` open from this kernel, publish `events`, measure the server.

    Each measurement gets a fresh asyncio server (`launch("asyncio", **server_options)`):
    memory that one crowd freed would otherwise be reused by the next, and hide its cost.
    A `Swarm` holds them, on one asyncio loop in this kernel, whichever the style.
    """
    with launch("asyncio", **server_options) as server:
        return _costs(server, style, connections, events, rate)


def connection_costs_each(styles: Sequence[Style] = STYLES, connections: int = 1000,
                          events: int = 10, rate: float = 10,
                          **server_options: Any) -> list[CostRow]:
    """`connection_costs` for each of `styles`, each on a fresh server of its own.

    The servers start side by side (`launch_all`), which saves the wait for each start; the
    crowds are then held one style after another, each on its own server, so every row
    measures one crowd alone, as `connection_costs` does.
    """
    servers = launch_all([("asyncio", server_options)] * len(styles))
    try:
        return [_costs(server, style, connections, events, rate)
                for server, style in zip(servers, styles, strict=True)]
    finally:
        for server in servers:
            server.stop()


def _costs(server: Server, style: Style, connections: int, events: int,
           rate: float) -> CostRow:
    idle = server.stats()
    start = idle["last_event_id"]
    metrics = Metrics()
    crowd = Swarm(server.url, connections, style, hold=HOLD_S, metrics=metrics,
                  last_event_id=start).start()
    counter = "waiting" if style == "long" else "streams"
    try:
        if not wait_until(lambda: server.stats()[counter] >= connections, CROWD_S):
            # Costs per connection of a crowd still connecting would be neither: say so instead.
            m = metrics.summary()
            raise PollingLabError(
                f"only {server.stats()[counter]} of {connections} {style} connections were open "
                f"after {CROWD_S:g} s ({m['errors']} connection errors; last: {m['last_error']}). "
                "The machine is probably busy: close other notebooks or jobs and run this "
                "cell again, or ask for fewer connections.")
        time.sleep(0.3)  # let the server settle before reading its memory
        held = server.stats()
        idle_from, idle_cpu = time.monotonic(), server.cpu_seconds()
        time.sleep(IDLE_S)
        idle_pct = 100 * (server.cpu_seconds() - idle_cpu) / (time.monotonic() - idle_from)
        cpu_before = server.cpu_seconds()
        publish_at(server, rate, events)
        wait_until(lambda: metrics.summary()["events"] >= connections * events, 20)
        cpu = server.cpu_seconds() - cpu_before
        m = metrics.summary()
    finally:
        crowd.stop()
    open_now = held["waiting"] if style == "long" else held["streams"]
    return CostRow(style, open_now,
                   (held["rss_bytes"] - idle["rss_bytes"]) / max(open_now, 1) / 1024,
                   idle_pct, cpu / max(m["events"], 1) * 1e6, m["events"], m["missing"],
                   m["duplicates"], m["latency_ms_p50"], m["latency_ms_p99"])


@dataclass(frozen=True)
class ResumeRow:
    """One client whose connection was cut mid-stream while events kept coming."""

    style: Style
    published: int
    delivered: int
    missing: int
    duplicates: int
    connections: int  # TCP connections it opened: 1 before the cut, more after
    resumed_ms: float  # from the cut to the first event delivered after it


def resume_after_drop(server: Server, before: int = 5, during: int = 5,
                      after: int = 5) -> list[ResumeRow]:
    """Cut every client's connection (no goodbye), publish while they are away, then more."""
    start = server.stats()["last_event_id"]
    wires = {style: WireCounter(server.url).start() for style in STYLES}
    firsts: dict[Style, float] = {}
    cut_at = [0.0]

    def first_after_cut(style: Style) -> Callable[[object], None]:
        def seen(events: object) -> None:
            if cut_at[0] and style not in firsts:
                firsts[style] = time.monotonic()
        return seen

    clients = {style: client_for(style, wires[style].url, last_event_id=start,
                                 on_events=first_after_cut(style), backoff_cap=1.0).start()
               for style in STYLES}
    try:
        wait_until(lambda: server.stats()["waiting"] >= 1 and server.stats()["streams"] >= 2, 10)
        publish_at(server, 20, before)
        caught_up(list(clients.values()), start + before, 5)
        cut_at[0] = time.monotonic()
        for wire in wires.values():
            wire.cut()
        publish_at(server, 50, during)  # these happen while every client is disconnected
        time.sleep(0.3)
        publish_at(server, 20, after)
        caught_up(list(clients.values()), start + before + during + after, 15)
        rows = []
        for style, client in clients.items():
            m = client.metrics.summary()
            rows.append(ResumeRow(style, before + during + after, m["events"], m["missing"],
                                  m["duplicates"], wires[style].counts().connections,
                                  1000 * (firsts.get(style, float("nan")) - cut_at[0])))
    finally:
        for client in clients.values():
            client.stop()
        for wire in wires.values():
            wire.stop()
    return rows


def first_messages(url: str, style: Literal["sse", "ws"], after: int, count: int) -> str:
    """The first `count` messages after event `after`, exactly as they arrive, as text.

    For SSE: the response's status line and headers, then the body bytes (chunked framing
    removed, as every client sees it). For WebSocket: the hello frame and the event frames.
    """
    if style == "ws":
        frames = []
        with connect(f"ws://{urlsplit(url).netloc}/ws?last_event_id={after}", proxy=None,
                     compression=None) as ws:
            for _ in range(count + 1):
                frames.append(str(ws.recv(timeout=5)))
        return "\n".join(frames)
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=5)
    try:
        conn.request("GET", "/sse", headers={"Last-Event-ID": str(after)})
        response = conn.getresponse()
        head = f"HTTP/1.1 {response.status} {response.reason}\n" + "".join(
            f"{k}: {v}\n" for k, v in response.getheaders())
        body, parser, seen = b"", SSEParser(), 0
        while seen < count:
            chunk = response.read1(65536)
            if not chunk:
                break
            body += chunk
            seen += len(parser.feed(chunk))
        return head + "\n" + body.decode()
    finally:
        conn.close()
