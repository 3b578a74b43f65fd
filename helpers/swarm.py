"""Many simulated clients from one kernel: asyncio and aiohttp, not one thread per client.

    with Swarm(server.url, 1000, "long", hold=30) as swarm:
        server.trigger()

A swarm runs its own event loop in one background thread. Each simulated client has its own
connection and cursor and follows the same rules as `ShortPollClient` and `LongPollClient`
(the shared `Cursor`), and all of them report into one `Metrics` recorder.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import threading
import time
from types import TracebackType
from typing import Any, Literal

import aiohttp

from helpers.clients import CONNECT_TIMEOUT_S, READ_MARGIN_S, Cursor, backoff_delay
from helpers.errors import PollError, ServerUnavailable
from helpers.metrics import Metrics

Strategy = Literal["short", "long"]


class Swarm:
    """`n` simulated clients of one strategy, all polling `url` until `stop()`."""

    def __init__(self, url: str, n: int, strategy: Strategy = "long", *, interval: float = 1.0,
                 hold: float = 30.0, metrics: Metrics | None = None, last_event_id: int = 0,
                 limit: int = 100, backoff_base: float = 0.1, backoff_cap: float = 5.0,
                 name: str = "swarm") -> None:
        if strategy not in ("short", "long"):
            raise ValueError('strategy must be "short" or "long"')
        if n < 1:
            raise ValueError("a swarm needs at least one client")
        self.url = url.rstrip("/")
        self.n = n
        self.strategy = strategy
        self.interval = interval
        self.hold = hold
        self.limit = limit
        self.backoff = (backoff_base, backoff_cap)
        self.metrics = metrics if metrics is not None else Metrics()
        self.cursors = [Cursor(f"{name}-{i}", self.metrics, last_event_id) for i in range(n)]
        self.errors: list[PollError] = []  # clients stopped by a 4xx, with the reason
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Swarm:
        """Start every client; returns once each has sent (or is about to send) its first poll."""
        if self.running:
            return self
        self._ready.clear()
        self._thread = threading.Thread(target=self._main, name="swarm", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel every client and close every connection; held polls are released at once."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:  # the loop closed in the meantime
                pass
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> Swarm:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._run_all())
        finally:
            loop.close()

    async def _run_all(self) -> None:
        self._stopping = asyncio.Event()
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        read = self.hold + READ_MARGIN_S if self.strategy == "long" else READ_MARGIN_S
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=read)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            tasks = [asyncio.create_task(self._client(session, cursor)) for cursor in self.cursors]
            self._ready.set()
            await self._stopping.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _client(self, session: aiohttp.ClientSession, cursor: Cursor) -> None:
        if self.strategy == "long":
            endpoint = "/poll_for_updates"
        else:
            endpoint = "/events"
            # Spread short polls over the interval, as independent browsers would be.
            await asyncio.sleep(random.uniform(0, self.interval))
        failures = 0
        while True:
            started = time.monotonic()
            params: dict[str, Any] = {"last_event_id": cursor.last_event_id, "limit": self.limit}
            if self.strategy == "long":
                params["timeout"] = self.hold
            self.metrics.count_request()
            try:
                try:
                    async with session.get(self.url + endpoint, params=params) as response:
                        body = await response.read()
                        received = time.time()
                        status, headers = response.status, response.headers
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                    raise ServerUnavailable(f"{type(exc).__name__}: {exc}") from exc
                cursor.apply(status, headers, functools.partial(json.loads, body), received)
            except PollError as exc:
                self.errors.append(exc)
                self.metrics.record_error(str(exc))
                return
            except ServerUnavailable as exc:
                failures += 1
                self.metrics.record_error(str(exc))
                delay = backoff_delay(failures, *self.backoff)
                await asyncio.sleep(max(delay, exc.retry_after or 0))
                continue
            failures = 0
            if self.strategy == "short":
                await asyncio.sleep(max(0.0, started + self.interval - time.monotonic()))

