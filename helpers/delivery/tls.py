"""Notebook 07 over TLS: what a handshake costs, and how many each delivery style pays per event.

Both measurements run against one server that `launch(kind, tls=True)` started, with every
client verifying its throwaway CA. `handshake_cost` times a new connection (TCP alone, then TCP
and TLS) and a request on a new connection against one on a kept one. `handshakes_per_event`
reads the server's own `/stats` `connections` counter (a TLS connection counts once its
handshake is done) around a run of events, for each way of delivering them.
"""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from helpers.clients import LongPollClient
from helpers.experiment import wait_until
from helpers.http import session_for
from helpers.launcher import Server
from helpers.streams import SSEClient, StreamClient, WebSocketClient
from helpers.tls import client_context, requests_verify

Way = Literal["long, new connection per poll", "long, kept-alive", "SSE", "WebSocket"]
WAYS: tuple[Way, ...] = ("long, new connection per poll", "long, kept-alive", "SSE", "WebSocket")
HOLD_S = 30.0  # longer than a run: no 204 (and no extra request) muddies the count


@dataclass(frozen=True)
class HandshakeCost:
    """Medians over `samples` tries, in milliseconds, measured from this kernel on loopback."""

    samples: int
    tcp_connect_ms: float  # socket.create_connection alone
    tls_connect_ms: float  # the same, then the TLS handshake, certificate checked
    new_connection_request_ms: float  # GET /health on a fresh connection (TCP + TLS + request)
    kept_connection_request_ms: float  # GET /health on one kept-alive connection

    @property
    def handshake_ms(self) -> float:
        """What TLS adds to a new connection: the handshake alone."""
        return self.tls_connect_ms - self.tcp_connect_ms


def _median_ms(run: Callable[[], object], samples: int) -> float:
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def handshake_cost(server: Server, samples: int = 30) -> HandshakeCost:
    """Time new connections and requests to `server` (an https one), `samples` times each."""
    require_https(server)
    parts = urlsplit(server.url)
    address = (parts.hostname or "127.0.0.1", parts.port or 443)
    context = client_context(server.verify)
    verify = requests_verify(server.verify)

    def tcp() -> None:
        socket.create_connection(address, timeout=3).close()

    def tls() -> None:
        raw = socket.create_connection(address, timeout=3)
        context.wrap_socket(raw, server_hostname=address[0]).close()  # handshake on connect

    def fresh() -> None:
        with session_for(server.url) as session:
            session.get(server.url + "/health", verify=verify, timeout=3).raise_for_status()

    kept = session_for(server.url)
    kept.get(server.url + "/health", verify=verify, timeout=3)  # open it once, untimed

    def reused() -> None:
        kept.get(server.url + "/health", verify=verify, timeout=3).raise_for_status()

    try:
        return HandshakeCost(samples, _median_ms(tcp, samples), _median_ms(tls, samples),
                             _median_ms(fresh, samples), _median_ms(reused, samples))
    finally:
        kept.close()


@dataclass(frozen=True)
class HandshakeRow:
    """One way of delivering over TLS: new TLS connections the server accepted per event."""

    way: Way
    events: int  # delivered, each one published after the one before arrived
    connections: int  # TLS connections the server accepted during the run
    p50_ms: float  # latency: receive time minus the event's own timestamp

    @property
    def connections_per_event(self) -> float:
        return self.connections / self.events if self.events else float("nan")


def client_for(way: Way, server: Server, last_event_id: int) -> LongPollClient | StreamClient:
    """The kit's client for one way of delivering, verifying the server's CA (not started)."""
    if way == "SSE":
        return SSEClient(server.url, verify=server.verify, last_event_id=last_event_id)
    if way == "WebSocket":
        return WebSocketClient(server.url, verify=server.verify, last_event_id=last_event_id)
    client = LongPollClient(server.url, hold=HOLD_S, verify=server.verify,
                            last_event_id=last_event_id)
    if way == "long, new connection per poll":
        # Ask the server to close after each answer, as an HTTP/1.0 client does, or as the
        # Flask server (werkzeug) does on its own: the next poll opens a new TLS connection.
        client.session.headers["Connection"] = "close"
    return client


def handshakes_per_event(server: Server, events: int = 20,
                         ways: tuple[Way, ...] = WAYS) -> list[HandshakeRow]:
    """For each way, count the TLS connections the server accepts while `events` arrive.

    The count starts before the client connects, so a stream's one handshake is in it. Each
    event is published only once the one before it arrived, so every long-poll answer carries
    exactly one event (at a rate, several could share one answer and hide the cost).
    """
    require_https(server)
    return [_one_way(server, way, events) for way in ways]


def _one_way(server: Server, way: Way, events: int) -> HandshakeRow:
    wait_until(lambda: _listening(server) == 0, 5)  # the previous client has gone
    stats = server.stats()
    before = stats["connections"]
    client = client_for(way, server, stats["last_event_id"])
    client.start()
    try:
        if not wait_until(lambda: _listening(server) >= 1, 10):
            raise TimeoutError(f"{way}: the client did not connect within 10 s ("
                               f"{client.metrics.errors} errors, the last: "
                               f"{client.metrics.last_error})")
        for i in range(events):
            published = server.trigger(f"{way} {i + 1}")["id"]
            if not wait_until(lambda: client.last_event_id >= published, 10):  # noqa: B023
                raise TimeoutError(f"{way}: event {i + 1} did not arrive within 10 s")
        summary = client.metrics.summary()
        connections = server.stats()["connections"] - before
    finally:
        client.stop()
    return HandshakeRow(way, summary["events"], connections, summary["latency_ms_p50"])


def require_https(server: Server) -> None:
    """Raise ValueError unless `server` serves https, saying how to start one that does."""
    if not server.url.startswith("https://"):
        raise ValueError(f"{server.url} is not an https server; start one with "
                         "launch(kind, tls=True)")


def _listening(server: Server) -> int:
    """Held long polls and open streams on the server now."""
    stats = server.stats()
    return int(stats["streams"]) + int(stats["waiting"])
