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
        """
        woken = self.next_publish() if woken is None else woken
        await asyncio.wait((woken, *also), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)

    def wake_all(self) -> None:
        woken, self._next = self._next, None
        if woken is not None and not woken.done():
            woken.set_result(None)
