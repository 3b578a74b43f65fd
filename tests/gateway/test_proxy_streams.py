"""servers/proxy.py with streams: SSE relayed as it arrives, WebSockets relayed frame by frame,
`--buffering` showing what a buffering proxy does to SSE, and long polling unaffected."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest
import requests
from gateway_support import RawStream
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from helpers import Server, launch
from helpers.faults import cut_connections, proxy_stats
from servers.proxy_streams import BUFFER_BYTES, buffers

pytestmark = pytest.mark.live
PROMPT_S = 0.5  # "arrives at once": far above loopback latency, far below the buffered case


@pytest.fixture(scope="module")
def upstream() -> Iterator[Server]:
    with launch("asyncio", hold=5) as server:
        yield server


def test_buffering_follows_the_mode_and_the_header() -> None:
    said_no = {"X-Accel-Buffering": "no"}
    assert [buffers(mode, said_no) for mode in ("off", "on", "force")] == [False, False, True]
    assert [buffers(mode, {}) for mode in ("off", "on", "force")] == [False, True, True]
    assert buffers("on", {"X-Accel-Buffering": " NO "}) is False
    assert buffers("on", {"X-Accel-Buffering": "yes"}) is True


@pytest.mark.parametrize("mode", ["off", "on"])
def test_an_sse_event_arrives_at_once_unbuffered_or_when_the_server_says_no(
        mode: str, upstream: Server, launched: Callable[..., Server]) -> None:
    proxy = launched("proxy", upstream=upstream.url, buffering=mode)
    cursor = upstream.stats()["last_event_id"]
    stream = RawStream(proxy.url, f"/sse?last_event_id={cursor}")
    try:
        assert stream.read_until(b"retry:", 5) is not None, stream.received
        head = stream.received.split(b"\r\n\r\n")[0].lower()
        assert b"x-accel-buffering: no" in head and b"text/event-stream" in head
        for n in range(3):  # each event on its own, not bunched
            began = time.monotonic()
            upstream.trigger(f"probe {mode} {n}")
            waited = stream.read_until(f"probe {mode} {n}".encode(), 5)
            assert waited is not None and time.monotonic() - began < PROMPT_S, waited
    finally:
        stream.close()
    assert proxy_stats(proxy)["streams"]["streamed_total"] == 1


def test_a_forced_buffer_holds_sse_events_until_it_fills(upstream: Server,
                                                          launched: Callable[..., Server]) -> None:
    proxy = launched("proxy", upstream=upstream.url, buffering="force")
    cursor = upstream.stats()["last_event_id"]
    stream = RawStream(proxy.url, f"/sse?last_event_id={cursor}")
    try:
        upstream.trigger("first")
        assert stream.read_until(b"first", 1.0) is None, "a forced buffer sent the event at once"
        published = 1
        began = time.monotonic()
        while stream.read_until(b"first", 0.05) is None:  # publish until the buffer overflows
            assert published < 4 * BUFFER_BYTES // 60, "the buffer never flushed"
            upstream.trigger(f"filler {published:04d}")
            published += 1
        assert published * 60 >= BUFFER_BYTES // 2  # each event is ~80 bytes of SSE
        assert stream.arrivals[-1][1] >= BUFFER_BYTES // 2  # arrived bunched, in one burst
        assert time.monotonic() - began > 0
    finally:
        stream.close()


def test_long_polls_are_unaffected_by_a_forced_buffer(upstream: Server,
                                                       launched: Callable[..., Server],
                                                       pool: object) -> None:
    proxy = launched("proxy", upstream=upstream.url, buffering="force")
    cursor = upstream.stats()["last_event_id"]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as one:
        poll = one.submit(requests.get, proxy.url + "/poll_for_updates",
                          params={"last_event_id": cursor, "timeout": 4}, timeout=10)
        deadline = time.monotonic() + 5
        while upstream.stats()["waiting"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        began = time.monotonic()
        upstream.trigger("polled")
        answer = poll.result(5)
    assert time.monotonic() - began < PROMPT_S
    assert answer.status_code == 200 and answer.json()[0]["message"] == "polled"


def test_the_read_timeout_applies_between_chunks_of_a_stream(
        upstream: Server, launched: Callable[..., Server]) -> None:
    proxy = launched("proxy", upstream=upstream.url, read_timeout=1)
    stream = RawStream(proxy.url, f"/sse?last_event_id={upstream.stats()['last_event_id']}")
    try:
        for n in range(5):  # 2.5 s in all, longer than the timeout, never silent for 1 s
            upstream.trigger(f"tick {n}")
            assert stream.read_until(f"tick {n}".encode(), 2) is not None
            time.sleep(0.5)
        assert stream.closed_within(3), "a stream silent for the read timeout was not ended"
    finally:
        stream.close()
    assert proxy_stats(proxy)["streams"]["streamed_timeouts"] == 1


def ws_url(proxy: Server, query: str = "") -> str:
    return "ws" + proxy.url.removeprefix("http") + "/ws" + query


def test_a_websocket_is_relayed_both_ways(upstream: Server,
                                          launched: Callable[..., Server]) -> None:
    proxy = launched("proxy", upstream=upstream.url)
    cursor = upstream.stats()["last_event_id"]
    with connect(ws_url(proxy, f"?last_event_id={cursor}"), proxy=None, open_timeout=5) as ws:
        hello = json.loads(ws.recv(timeout=5))
        assert hello["type"] == "hello" and hello["stream"] == upstream.health()["stream"]
        ws.send(json.dumps({"type": "publish", "message": "over the socket"}))
        frames = [json.loads(ws.recv(timeout=5)) for _ in range(2)]
        assert {f["type"] for f in frames} == {"published", "event"}
        ws.send("not json")
        assert json.loads(ws.recv(timeout=5))["error"] == "malformed_json"
        upstream.trigger("from outside")
        assert json.loads(ws.recv(timeout=5))["event"]["message"] == "from outside"
        assert upstream.stats()["streams"] >= 1
    stats = proxy_stats(proxy)["streams"]
    assert stats["websockets_total"] == 1 and stats["frames_to_upstream"] == 2
    deadline = time.monotonic() + 3  # the client closed: the upstream socket is closed too
    while proxy_stats(proxy)["streams"]["websockets_open"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proxy_stats(proxy)["streams"]["websockets_open"] == 0


def test_a_refused_upgrade_reaches_the_client_as_the_servers_json(
        upstream: Server, launched: Callable[..., Server]) -> None:
    proxy = launched("proxy", upstream=upstream.url)
    direct = requests.get(upstream.url + "/ws?last_event_id=x",
                          headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                   "Sec-WebSocket-Version": "13"}, timeout=5)
    via = requests.get(proxy.url + "/ws?last_event_id=x",
                       headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                "Sec-WebSocket-Version": "13"}, timeout=5)
    assert (via.status_code, via.json()) == (direct.status_code, direct.json())
    assert via.status_code == 400


def test_cut_closes_streams_and_websockets(upstream: Server,
                                           launched: Callable[..., Server]) -> None:
    proxy = launched("proxy", upstream=upstream.url)
    before = upstream.stats()["streams"]
    stream = RawStream(proxy.url, "/sse")
    with connect(ws_url(proxy), proxy=None, open_timeout=5) as ws:
        ws.recv(timeout=5)
        assert stream.read_until(b"retry:", 5) is not None
        deadline = time.monotonic() + 3
        while upstream.stats()["streams"] < before + 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert cut_connections(proxy) >= 2
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=3)
        assert stream.closed_within(3)
    stream.close()
    deadline = time.monotonic() + 3
    while upstream.stats()["streams"] > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.stats()["streams"] == before
    assert proxy_stats(proxy)["streams"]["websockets_open"] == 0


@pytest.fixture
def headerless_stream() -> Iterator[tuple[str, Callable[[bytes], None]]]:
    """A real HTTP server in a thread whose /sse does not say `X-Accel-Buffering: no`, as
    most streaming servers don't; `send(data)` writes a chunk to every open stream."""
    import asyncio
    import threading

    from aiohttp import web

    loop = asyncio.new_event_loop()
    queues: list[asyncio.Queue[bytes]] = []

    async def sse(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        queues.append(queue)
        await response.write(b"retry: 1000\n\n")
        while (data := await queue.get()) != b"":
            await response.write(data)
        return response

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/sse", sse)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def send(data: bytes) -> None:
        deadline = time.monotonic() + 5
        while not queues and data and time.monotonic() < deadline:  # wait for the proxy's GET
            time.sleep(0.01)
        assert queues or not data, "no stream reached the headerless server"
        for queue in queues:
            loop.call_soon_threadsafe(queue.put_nowait, data)

    yield f"http://127.0.0.1:{port}", send
    send(b"")
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_buffering_on_holds_a_stream_whose_server_does_not_say_no(
        headerless_stream: tuple[str, Callable[[bytes], None]],
        launched: Callable[..., Server]) -> None:
    url, send = headerless_stream
    proxy = launched("proxy", upstream=url, buffering="on")
    stream = RawStream(proxy.url, "/sse")
    try:
        send(b"data: held\n\n")
        assert stream.read_until(b"held", 1.0) is None, "buffering on sent it at once"
        send(b": " + b"x" * BUFFER_BYTES + b"\n\n")  # one comment that fills the buffer
        assert stream.read_until(b"held", 5) is not None
    finally:
        stream.close()
