"""Many streams from one kernel: N SSE or WebSocket connections on one asyncio loop.

A thread per connection (what `SSEClient` and `WebSocketClient` use) is fine for a few lanes;
a thousand connections need one event loop instead, as `helpers.Swarm` does for long polls.
Each connection records into one `Metrics`, under its own name, so a crowd reports lost and
duplicated events per connection just as the single clients do.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Literal

import aiohttp
from websockets.asyncio.client import connect

from helpers.launcher import raise_open_file_limit
from helpers.metrics import Metrics
from helpers.sse import SSEParser

CrowdStyle = Literal["sse", "ws"]
OPENING_AT_ONCE = 100  # handshakes in flight at once, so a crowd does not trip the backlog


class Crowd:
    """`n` connections of one `style` to `url`, held until `stop()`.

    `opened` counts the connections whose stream has started (SSE headers, or WebSocket hello).
    """

    def __init__(self, url: str, n: int, style: CrowdStyle, *, last_event_id: int = 0,
                 metrics: Metrics | None = None, compression: str | None = None) -> None:
        if style not in ("sse", "ws"):
            raise ValueError('style must be "sse" or "ws"')
        self.url = url.rstrip("/")
        self.n = n
        self.style = style
        self.last_event_id = last_event_id
        self.metrics = metrics if metrics is not None else Metrics()
        self.compression = compression  # WebSocket only: "deflate" asks for per-message deflate
        self.opened = 0
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None

    def start(self, timeout: float = 30.0) -> Crowd:
        """Open every connection; return once all are open (or `timeout` s have passed)."""
        raise_open_file_limit()
        self._thread = threading.Thread(target=self._loop.run_until_complete,
                                        args=(self._main(),), name=f"crowd-{self.style}",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while self.opened < self.n and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)
        self._thread = None

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        gate = asyncio.Semaphore(OPENING_AT_ONCE)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, trust_env=False,
                                         timeout=aiohttp.ClientTimeout(total=None)) as session:
            one = self._sse if self.style == "sse" else self._ws
            tasks = [asyncio.ensure_future(one(i, gate, session)) for i in range(self.n)]
            await self._stopping.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _deliver(self, name: int, events: list[dict[str, object]]) -> None:
        if events:
            self.metrics.record_events(name, events, time.time())  # type: ignore[arg-type]

    async def _sse(self, name: int, gate: asyncio.Semaphore,
                   session: aiohttp.ClientSession) -> None:
        self.metrics.start_client(name, self.last_event_id)
        async with gate:
            response = await session.get(self.url + "/sse",
                                         headers={"Last-Event-ID": str(self.last_event_id)})
        async with response:
            self.opened += 1
            parser = SSEParser()
            async for chunk in response.content.iter_any():
                self._deliver(name, [json.loads(m.data) for m in parser.feed(chunk)
                                     if m.event == "message"])

    async def _ws(self, name: int, gate: asyncio.Semaphore,
                  session: aiohttp.ClientSession) -> None:
        self.metrics.start_client(name, self.last_event_id)
        uri = "ws" + self.url.removeprefix("http") + f"/ws?last_event_id={self.last_event_id}"
        async with gate:
            ws = await connect(uri, compression=self.compression, proxy=None,
                               ping_interval=None)
        async with ws:
            await ws.recv()  # hello
            self.opened += 1
            async for frame in ws:
                message = json.loads(frame)
                if message.get("type") == "event":
                    self._deliver(name, [message["event"]])

    def __enter__(self) -> Crowd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
