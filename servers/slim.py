"""TUNING, not the lesson: uvicorn's per-connection objects, made smaller for 10,000 held polls.

A held poll costs memory for as long as it is held, and at 10,000 of them every few hundred
bytes of each connection is megabytes. `tracemalloc` on 1,000 held polls (docs/benchmarks.md)
finds, among uvicorn's objects, three that are nearly always empty or idle:

* the queue of pipelined requests, a `collections.deque` (about 560 bytes when empty), where
  `Pipeline` is a list (56 bytes);
* two `asyncio.Event`s, one for flow control per connection and one per request cycle, each
  with a deque of waiters made up front (about 700 bytes each), where `LazyEvent` makes its
  list of waiters only when something waits, which on a held poll nothing does.

`slim_connection` and `slim_cycle` swap them in on uvicorn's objects, only where uvicorn made
the kind of object they replace, so a uvicorn that changes its internals is left as it is.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any


class Pipeline(list[Any]):
    """What uvicorn asks of its pipeline deque (`appendleft`, `pop`, truth), as a list: an empty
    list is 56 bytes. Pipelined requests are rare and few, so inserting at 0 costs nothing."""

    def appendleft(self, item: Any) -> None:
        self.insert(0, item)


class LazyEvent:
    """`asyncio.Event`'s `is_set`, `set`, `clear` and `wait`, with slots, and no list of
    waiters until something waits."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)  # cancelled before `set`


def slim_connection(protocol: Any) -> None:
    """After uvicorn's `connection_made`: its pipeline queue and its flow control's event."""
    if isinstance(getattr(protocol, "pipeline", None), collections.deque) and not protocol.pipeline:
        protocol.pipeline = Pipeline()
    flow = getattr(protocol, "flow", None)
    event = getattr(flow, "_is_writable_event", None)
    if type(event) is asyncio.Event:
        lazy = LazyEvent()
        if event.is_set():
            lazy.set()
        flow._is_writable_event = lazy  # type: ignore[union-attr]


def slim_cycle(cycle: Any) -> None:
    """Right after uvicorn made a request's cycle, before its ASGI task first runs."""
    event = getattr(cycle, "message_event", None)
    if type(event) is asyncio.Event and not event.is_set():
        cycle.message_event = LazyEvent()
