"""`make bench`'s stream scenario: one event fanned out to N SSE or WebSocket subscribers.

The same measurement for the asyncio server's `GET /sse` and `WS /ws` and for Nchan's own
EventSource and WebSocket subscribers, in the same run: open N subscriber connections (spread
over loopback source addresses, as the poll fan-out does), read the servers' memory, publish one
event and time, from just before the publish request is written, the moment each subscriber's
bytes carrying it arrive (`time.perf_counter()` in `data_received`). The event's text is a
marker unique to the round, so a subscriber spots it in the raw bytes: SSE lines and unmasked
server-to-client WebSocket frames both carry it verbatim.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal

from helpers.loadclient import IP_BIND_ADDRESS_NO_PORT, source_addresses
from helpers.metrics import percentile
from helpers.processes import rss_kib
from helpers.scaling.fanout import Say, ms, publish_timed

Protocol = Literal["sse", "ws"]
PROTOCOLS: tuple[Protocol, ...] = ("sse", "ws")
#: The path of each protocol's subscriber, on the kit's server and on Nchan (bench.nchan).
KIT_PATHS = {"sse": "/sse", "ws": "/ws"}
NCHAN_PATHS = {"sse": "/sub_es", "ws": "/sub_ws"}


def subscribe_request(protocol: Protocol, path: str) -> bytes:
    """The request that opens one subscription: an SSE GET, or a WebSocket upgrade."""
    head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if protocol == "sse":
        head += "Accept: text/event-stream\r\n"
    else:
        key = base64.b64encode(os.urandom(16)).decode()
        head += ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                 f"Sec-WebSocket-Key: {key}\r\n")
    return (head + "\r\n").encode()


class Subscriber(asyncio.Protocol):
    """One subscription. `opened` once its response head arrived; `got_at` when the marker did."""

    def __init__(self, request: bytes, opened_status: bytes) -> None:
        self.request = request
        self.opened_status = opened_status  # b" 200 " for SSE, b" 101 " for a WebSocket
        self.opened = False
        self.closed = False
        self.marker = b""
        self.got_at: float | None = None
        self._tail = b""
        self._frames = b""  # WebSocket: bytes not yet read as whole frames
        self._upgraded = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        seen = self._tail + data
        if not self.opened and self.opened_status in seen[:16]:
            self.opened = True
        if self.marker and self.got_at is None and self.marker in seen:
            self.got_at = now
        self._tail = seen[-64:]
        if self.opened_status == b" 101 ":
            self._answer_pings(data)

    def _answer_pings(self, data: bytes) -> None:
        """Read the server's WebSocket frames just enough to answer its pings (or it drops us)."""
        self._frames += data
        if not self._upgraded:
            end = self._frames.find(b"\r\n\r\n")
            if end < 0:
                return
            self._frames, self._upgraded = self._frames[end + 4:], True
        while len(self._frames) >= 2:
            opcode, size, start = self._frames[0] & 0x0F, self._frames[1] & 0x7F, 2
            if size >= 126:
                start = 4 if size == 126 else 10
                if len(self._frames) < start:
                    return
                size = int.from_bytes(self._frames[2:start], "big")
            if len(self._frames) < start + size:
                return
            payload, self._frames = self._frames[start:start + size], self._frames[start + size:]
            if opcode == 0x9 and self.transport is not None:  # ping: a masked pong, zero mask
                self.transport.write(bytes([0x8A, 0x80 | len(payload)]) + bytes(4) + payload)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def watch(self, marker: bytes) -> None:
        self.marker, self.got_at = marker, None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def open_subscribers(host: str, port: int, n: int, protocol: Protocol, path: str,
                           concurrency: int = 200) -> list[Subscriber]:
    """Open `n` subscriptions from loopback source addresses, `concurrency` handshakes at once."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    status = b" 200 " if protocol == "sse" else b" 101 "

    async def one(source: str) -> Subscriber:
        async with gate:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
            sock.setblocking(False)
            await loop.sock_connect(sock, (host, port))
            _, subscriber = await loop.create_connection(
                lambda: Subscriber(subscribe_request(protocol, path), status), sock=sock)
            return subscriber

    return list(await asyncio.gather(*(one(s) for s in source_addresses(n))))


async def wait_until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def stream_fan_out(peer: Any, protocol: Protocol, n: int, *, rounds: int = 3,
                         kit: bool = True, say: Say = lambda _: None) -> dict[str, Any]:
    """N subscribers of `protocol` on `peer`; `rounds` events fanned out to all of them."""
    path = KIT_PATHS[protocol] if kit else NCHAN_PATHS[protocol]
    if kit:
        path += f"?last_event_id={peer.last_id}"  # only what is published from now on
    rss_before = rss_kib(peer.pids())
    subscribers = await open_subscribers(peer.host, peer.port, n, protocol, path)
    try:
        await wait_until(lambda: all(s.opened or s.closed for s in subscribers), 30 + n / 200)
        opened = sum(s.opened for s in subscribers)
        await asyncio.sleep(0.5)  # let the server settle before reading its memory
        rss_held = rss_kib(peer.pids())
        say(f"  {opened:,} of {n:,} {protocol} subscribers open, server RSS "
            f"{rss_before / 1024:.1f} -> {rss_held / 1024:.1f} MiB")
        fan_outs, firsts, medians, delivered = [], [], [], []
        for r in range(rounds):
            marker = f"bench-{protocol}-{r}-{uuid.uuid4().hex[:8]}"
            for s in subscribers:
                s.watch(marker.encode())
            started, published = await publish_timed(peer, marker)
            await wait_until(lambda: all(s.got_at is not None for s in subscribers
                                         if s.opened and not s.closed), 10 + n / 500)
            peer.published(await asyncio.wait_for(published, 10))
            times = sorted(s.got_at - started for s in subscribers if s.got_at is not None)
            delivered.append(len(times))
            if times:
                fan_outs.append(times[-1])
                firsts.append(times[0])
                medians.append(percentile(times, 50))
            await asyncio.sleep(0.2)
    finally:
        for s in subscribers:
            s.close()
    return {"protocol": protocol, "subscribers": n, "opened": opened,
            "delivered": min(delivered, default=0), "rounds": rounds,
            "fanout_ms": ms(_median(fan_outs)), "first_ms": ms(_median(firsts)),
            "median_delivery_ms": ms(_median(medians)),
            "kib_per_connection": round((rss_held - rss_before) / max(opened, 1), 2)}


def _median(values: Sequence[float]) -> float:
    return percentile(sorted(values), 50) if values else float("nan")


TARGET_N = 10_000
TARGET_RATIO = 3.0
TARGET_P50_MS = 2.0
NCHAN = "nchan"


def _find(rows: list[dict[str, Any]], server: str, protocol: str, n: int) -> dict[str, Any] | None:
    return next((r for r in rows if r["server"] == server and r["protocol"] == protocol
                 and r["subscribers"] == n), None)


def _fmt(value: Any) -> str:
    if value is None or value != value:  # None or NaN
        return "–"
    return f"{value:,.2f}" if value < 10 else f"{value:,.0f}"


def _times(value: Any, reference: Any) -> str:
    return f"{value / reference:.1f}×" if value and reference else "–"


def report_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The report's stream section: targets, then a row per protocol, server and N."""
    if not rows:
        return []
    out = ["## 6 · Streams: one event to N SSE or WebSocket subscribers", "",
           "The asyncio server's `GET /sse` and `WS /ws` against Nchan's EventSource and "
           "WebSocket subscribers (`bench/streams.py`). Median of the rounds: the time from just "
           "before the publish to the last subscriber's bytes (fan-out), the first's, and the "
           "median subscriber's; RSS growth per open connection.", "",
           "| protocol | server | N | delivered | fan-out ms | × Nchan | first ms | median ms | "
           "KiB per connection | × Nchan |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ref = None if r["server"] == NCHAN else _find(rows, NCHAN, r["protocol"], r["subscribers"])
        fan, kib = ("", "") if ref is None else (_times(r["fanout_ms"], ref["fanout_ms"]),
                                                 _times(r["kib_per_connection"],
                                                        ref["kib_per_connection"]))
        out.append(f"| {r['protocol']} | {r['server']} | {r['subscribers']:,} | "
                   f"{r['delivered']:,} | {_fmt(r['fanout_ms'])} | {fan} | "
                   f"{_fmt(r['first_ms'])} | {_fmt(r['median_delivery_ms'])} | "
                   f"{_fmt(r['kib_per_connection'])} | {kib} |")
    out += ["", "| target | measured | met |", "|---|---|---|"]
    for protocol in PROTOCOLS:
        kit, nchan = _find(rows, "fastapi", protocol, TARGET_N), _find(rows, NCHAN, protocol,
                                                                         TARGET_N)
        if kit is None or nchan is None:
            shown, ok = "not measured in this run", "–"
        else:
            ratio = kit["fanout_ms"] / nchan["fanout_ms"]
            met = kit["delivered"] == TARGET_N and ratio <= TARGET_RATIO
            shown, ok = (f"{kit['delivered']:,} delivered in {_fmt(kit['fanout_ms'])} ms = "
                         f"{ratio:.1f}× Nchan's {_fmt(nchan['fanout_ms'])} ms"), (
                "yes" if met else "**no**")
        out.append(f"| {protocol} fan-out to {TARGET_N:,}: within {TARGET_RATIO:g}× Nchan | "
                   f"{shown} | {ok} |")
        one = _find(rows, "fastapi", protocol, 1)
        out.append(f"| {protocol}, one subscriber: p50 ≤ {TARGET_P50_MS:g} ms | "
                   + ("not measured in this run | – |" if one is None else
                      f"{_fmt(one['first_ms'])} ms over {one['rounds']} events | "
                      + ("yes" if one["first_ms"] <= TARGET_P50_MS else "**no**") + " |"))
    out.append("")
    return out
