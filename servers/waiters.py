"""The asyncio server's one wake-up: a future that every held poll and stream awaits together.

A publish (or, with a broker, its notification) resolves the future, and the next waiter makes a
new one. Waking N waiters is one `set_result`; each then reads the log after its own cursor.
`servers.fastapi_server` (the long poll) and `servers.streams` (SSE and WebSocket) wait here.
"""

from __future__ import annotations

import asyncio
from typing import Any


class Waiters:
    """One future that every held poll awaits; a publish resolves it and the next poll makes anew.

    The rule that closes the check-then-wait race: take `next_publish()` *before* reading the
    log, then await that same future. A publish that lands while the read is in flight (an
    `await` on Redis, say) has already resolved it, so the waiter reads again instead of
    sleeping through it. Must be used from the event loop's thread only.
    """

    def __init__(self) -> None:
        self._next: asyncio.Future[None] | None = None

    def next_publish(self) -> asyncio.Future[None]:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        return self._next

    async def wait(self, timeout: float, woken: asyncio.Future[None] | None = None,
                   *also: asyncio.Future[Any]) -> None:
        """Return when `woken` (by default the next publish) or one of `also` is done, or after
        `timeout` seconds.

        Pass the future taken before the read; with none, it is taken now, which is only safe
        when nothing was awaited since the log was read.

        What `asyncio.wait(..., return_when=FIRST_COMPLETED)` does, minus what a held poll does
        not need (a set of futures, two more coroutines, the done and pending sets): one future
        of its own, one timer, and a callback on each future (found by profiling a fan-out
        to 10,000 held polls: docs/benchmarks.md, "What each change bought").
        """
        woken = self.next_publish() if woken is None else woken
        loop = asyncio.get_running_loop()
        mine: asyncio.Future[None] = loop.create_future()

        def wake(_: object = None) -> None:
            if not mine.done():
                mine.set_result(None)

        timer = loop.call_later(timeout, wake)
        for future in (woken, *also):
            future.add_done_callback(wake)
        try:
            await mine
        finally:
            timer.cancel()
            for future in (woken, *also):
                # A done future has no callbacks left to search; an undone one (a timeout)
                # is searched, as asyncio.wait searches it.
                future.remove_done_callback(wake)

    def wake_all(self) -> None:
        woken, self._next = self._next, None
        if woken is not None and not woken.done():
            woken.set_result(None)
