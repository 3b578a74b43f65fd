"""The swarm's clients: tasks on one asyncio event loop, one connection and cursor each.

`SwarmEngine` runs that loop in one background thread of whichever process it is in.
`helpers.swarm.Swarm` (what notebooks use) runs it in a process of its own by default
(`helpers.swarm_worker`), so the clients do not share the kernel's core; `Swarm(process=False)`
runs it here, in a thread of this process.

Polls go over raw asyncio connections (`helpers.swarm_raw`), which time an answer the moment
it arrives; streams, and polls over `https://`, go over aiohttp. Each simulated client follows
the same rules as `ShortPollClient` and `LongPollClient` (the shared `Cursor`), and all of them
report into one `Metrics` recorder. Strategies "sse" and "ws" hold Server-Sent Event streams or
WebSockets instead of polls (`helpers.swarm_streams`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import aiohttp

from helpers.clients import (
    CONNECT_TIMEOUT_S,
    READ_MARGIN_S,
    Cursor,
    backoff_delay,
    gateway_ended_hold,
    gateway_repoll_delay,
    rate_limited_delay,
)
from helpers.errors import PollError, RateLimited, ServerUnavailable
from helpers.kinds import Strategy
from helpers.launcher import raise_open_file_limit
from helpers.metrics import Metrics
from helpers.streams import STREAM_READ_TIMEOUT_S
from helpers.swarm_raw import RawGet, raw_capable
from helpers.swarm_streams import follow_stream

#: How a client waits before retrying after a failure: a fixed `backoff_base` ("none"), doubling
#: from it up to `backoff_cap` ("exponential"), or a uniform draw below that ("full-jitter").
Backoff = Literal["none", "exponential", "full-jitter"]


@dataclass(frozen=True)
class Attempt:
    """One request of one simulated client, recorded when `Swarm(record=True)`."""

    client: str
    sent_at: float  # time.time() when it was sent
    status: int  # the HTTP status, 0 when no answer came (refused, cut, timed out)
    ok: bool  # answered with 200, 204 or 410: the client's cursor moved on normally


class SwarmEngine:
    """`n` simulated clients of one strategy, all polling `url` until `stop()`, on one loop."""

    def __init__(self, url: str, n: int, strategy: Strategy = "long", *, interval: float = 1.0,
                 hold: float = 30.0, metrics: Metrics | None = None, last_event_id: int = 0,
                 limit: int = 100, backoff_base: float = 0.1, backoff_cap: float = 5.0,
                 backoff: Backoff = "full-jitter", record: bool = False,
                 name: str = "swarm", compression: str | None = None,
                 client_ids: bool = False) -> None:
        if strategy not in ("short", "long", "sse", "ws"):
            raise ValueError('strategy must be "short", "long", "sse" or "ws"')
        if backoff not in ("none", "exponential", "full-jitter"):
            raise ValueError('backoff must be "none", "exponential" or "full-jitter"')
        if n < 1:
            raise ValueError("a swarm needs at least one client")
        self.url = url.rstrip("/")
        self.n = n
        self.strategy = strategy
        self.interval = interval
        self.hold = hold
        self.limit = limit
        self.backoff = (backoff_base, backoff_cap)
        self.backoff_mode = backoff
        self.record = record
        self.compression = compression  # "ws" only: "deflate" asks for per-message deflate
        self.attempts: list[Attempt] = []  # every request, when record=True
        self.kills = 0  # clients killed by kill()
        self.metrics = metrics if metrics is not None else Metrics()
        self.cursors = [Cursor(f"{name}-{i}", self.metrics, last_event_id) for i in range(n)]
        for cursor in self.cursors if client_ids else []:  # X-Client-Id: swarm-0, swarm-1, ...
            cursor.client_id = str(cursor.name)
        self.errors: list[PollError] = []  # clients stopped by a 4xx, with the reason
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: dict[int, asyncio.Task[None]] = {}  # by index into self.cursors
        self._ready = threading.Event()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> SwarmEngine:
        """Start every client; returns once each has sent (or is about to send) its first poll."""
        if self.running:
            return self
        raise_open_file_limit()  # one socket per simulated client
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

    def kill(self, n: int = 1, *, restart: bool = True, down_for: float = 0.0,
             rng: random.Random | None = None, timeout: float = 5.0) -> list[str]:
        """Kill `n` random running clients at once, as if their processes died mid-request.

        Each killed client's connection closes without a goodbye. With `restart`, each comes
        back `down_for` seconds later as a fresh client that kept its cursor (as an app that
        stored its `last_event_id` would), so it resumes where it was. Returns their names.
        """
        loop = self._loop
        if loop is None or not self.running:
            raise RuntimeError("the swarm is not running; start() it first")
        future = asyncio.run_coroutine_threadsafe(
            self._kill(n, restart, down_for, rng or random.Random()), loop)
        return future.result(timeout)

    async def _kill(self, n: int, restart: bool, down_for: float,
                    rng: random.Random) -> list[str]:
        alive = [i for i, task in self._tasks.items() if not task.done()]
        chosen = rng.sample(alive, min(n, len(alive)))
        for i in chosen:
            self._tasks[i].cancel()
        await asyncio.gather(*(self._tasks[i] for i in chosen), return_exceptions=True)
        self.kills += len(chosen)
        session = self._session
        if restart and session is not None:
            for i in chosen:
                self._tasks[i] = asyncio.create_task(
                    self._client(session, self.cursors[i], delay=down_for))
        return [str(self.cursors[i].name) for i in chosen]

    def _read_timeout(self) -> float:
        """Longer than the server's hold, as the article says: a quiet hold is not an error."""
        return {"long": self.hold + READ_MARGIN_S, "short": READ_MARGIN_S}.get(
            self.strategy, STREAM_READ_TIMEOUT_S)

    def _retry_delay(self, failures: int) -> float:
        base, cap = self.backoff
        if self.backoff_mode == "none":
            return base
        if self.backoff_mode == "exponential":
            return float(min(cap, base * 2 ** max(0, failures - 1)))
        return backoff_delay(failures, base, cap)

    def __enter__(self) -> SwarmEngine:
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
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S,
                                        sock_read=self._read_timeout())
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            self._session = session
            self._tasks = {i: asyncio.create_task(self._client(session, cursor))
                           for i, cursor in enumerate(self.cursors)}
            self._ready.set()
            await self._stopping.wait()
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            self._session = None

    async def _client(self, session: aiohttp.ClientSession, cursor: Cursor,
                      delay: float = 0.0) -> None:
        await asyncio.sleep(delay)
        if self.strategy in ("sse", "ws"):
            return await self._stream_client(session, cursor)
        if self.strategy == "long":
            endpoint = "/poll_for_updates"
        else:
            endpoint = "/events"
            # Spread short polls over the interval, as independent browsers would be.
            await asyncio.sleep(random.uniform(0, self.interval))
        poller = RawGet(self.url, self._read_timeout()) if raw_capable(self.url) else None
        try:
            await self._poll_loop(session, poller, endpoint, cursor)
        finally:
            if poller is not None:
                poller.close()

    async def _get(self, session: aiohttp.ClientSession, poller: RawGet | None, path: str,
                   params: dict[str, Any], cursor: Cursor) -> tuple[int, Any, bytes, float]:
        """One GET: (status, headers, body, receive time); ServerUnavailable if no answer came."""
        if poller is not None:
            return await poller.get(path, params, cursor.request_headers())
        try:
            async with session.get(self.url + path, params=params,
                                   headers=cursor.request_headers()) as response:
                body = await response.read()
                return response.status, response.headers, body, time.time()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise ServerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def _poll_loop(self, session: aiohttp.ClientSession, poller: RawGet | None,
                         endpoint: str, cursor: Cursor) -> None:
        failures = 0
        while True:
            started = time.monotonic()
            params: dict[str, Any] = {"last_event_id": cursor.last_event_id, "limit": self.limit}
            if self.strategy == "long":
                params["timeout"] = self.hold
            self.metrics.count_request()
            sent_at, status = time.time(), 0
            try:
                status, headers, body, received = await self._get(session, poller, endpoint,
                                                                   params, cursor)
                cursor.apply(status, headers, functools.partial(json.loads, body), received)
            except PollError as exc:
                self._record(cursor, sent_at, status, False)
                self.errors.append(exc)
                self.metrics.record_error(str(exc))
                return
            except ServerUnavailable as exc:
                self._record(cursor, sent_at, status, False)
                hold = self.hold if self.strategy == "long" else 0.0
                if isinstance(exc, RateLimited):
                    self.metrics.count_rate_limited()  # the gateway said when: no backoff growth
                    await asyncio.sleep(rate_limited_delay(exc))
                    continue
                if gateway_ended_hold(exc, time.monotonic() - started, hold):
                    self.metrics.count_gateway_timeout()  # an empty poll: no backoff growth
                    await asyncio.sleep(gateway_repoll_delay())
                    continue
                failures += 1
                self.metrics.record_error(str(exc))
                await asyncio.sleep(max(self._retry_delay(failures), exc.retry_after or 0))
                continue
            self._record(cursor, sent_at, status, True)
            failures = 0
            if self.strategy == "short":
                await asyncio.sleep(max(0.0, started + self.interval - time.monotonic()))

    async def _stream_client(self, session: aiohttp.ClientSession, cursor: Cursor) -> None:
        """One stream, held until the swarm stops; reconnected from the cursor when it drops."""
        failures = 0
        while True:
            self.metrics.count_request()
            sent_at = time.time()
            try:
                delivered = await follow_stream(
                    self.strategy, session, self.url, cursor,  # type: ignore[arg-type]
                    self.compression)
            except PollError as exc:
                self._record(cursor, sent_at, 0, False)
                self.errors.append(exc)
                self.metrics.record_error(str(exc))
                return
            except RateLimited as exc:
                self._record(cursor, sent_at, 429, False)
                self.metrics.count_rate_limited()
                await asyncio.sleep(rate_limited_delay(exc))
                continue
            except ServerUnavailable as exc:
                self._record(cursor, sent_at, 0, False)
                self.metrics.record_error(str(exc))
                delivered = 0
            failures = 0 if delivered else failures + 1
            if failures:
                await asyncio.sleep(self._retry_delay(failures))

    def _record(self, cursor: Cursor, sent_at: float, status: int, ok: bool) -> None:
        if self.record:  # list.append is atomic: readers in other threads see whole entries
            self.attempts.append(Attempt(str(cursor.name), sent_at, status, ok))

