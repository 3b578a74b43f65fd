"""The event log as the asyncio server uses it: one async interface over memory, SQLite or Redis.

`servers.fastapi_server` and `servers.streams` read, publish and wait through a `SharedLog`, and
never know where the events live: in this process (`LocalLog` around an `EventLog` or a
`SqliteEventLog`), or in a Redis broker shared by several servers (`servers.broker.BrokerLog`).
Reads are `await`ed because a broker's are network round trips; a local log answers them
without suspending, so an in-memory server waits exactly as it always did.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from servers import idempotency
from servers.contract import DEFAULT_MESSAGE, Event
from servers.eventlog import EventLog
from servers.startup import ServerConfig
from servers.stats import LogCounts
from servers.store import open_log


class SharedLog(LogCounts, Protocol):
    """Where the asyncio server's events live, and how it hears that there are new ones.

    Its `stream`, `last_id` and `oldest_id` are `LogCounts`': the log's identity, which every
    response carries, and the newest and oldest retained ids as last seen (`refresh` updates
    them from the store).
    """

    async def publish(self, message: str = DEFAULT_MESSAGE) -> Event:
        """Append one event with the next id; every waiter is woken once it is stored."""

    async def publish_once(self, key: str | None, message: str) -> tuple[Event, bool]:
        """`publish`, once per `Idempotency-Key` (None: every time); (event, was it a replay).

        Raises the 400 and 422 of `servers.idempotency` for a bad or reused key.
        """

    async def since(self, last_event_id: int, limit: int) -> list[Event]:
        """The events after the cursor, oldest first, at most `limit`.

        Raises ApiError(410) past retention, and ApiError(503) when the store cannot be reached.
        """

    async def refresh(self) -> None:
        """Bring `last_id` and `oldest_id` up to date (for /stats and the WebSocket hello)."""

    def on_wake(self, callback: Callable[[], None]) -> None:
        """Call `callback()` whenever waiters should read again: after each publish."""

    async def start(self) -> None:
        """Connect (a broker) before the server answers its first request."""

    async def close(self) -> None:
        """Disconnect, when the server stops."""

    def describe(self) -> dict[str, Any]:
        """What /stats shows of the log beyond its counts (a broker's state); {} for a local log."""


class LocalLog:
    """A `SharedLog` over this process's own `EventLog` (in memory, or SQLite).

    Every method answers without suspending, so nothing can run between a read and the wait
    that follows it, as in the asyncio server before the broker existed.
    """

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.publishes = idempotency.RecentPublishes()  # keys in this process's memory

    @property
    def stream(self) -> str:
        return self.log.stream

    @property
    def last_id(self) -> int:
        return self.log.last_id

    @property
    def oldest_id(self) -> int:
        return self.log.oldest_id

    async def publish(self, message: str = DEFAULT_MESSAGE) -> Event:
        return self.log.publish(message)

    async def publish_once(self, key: str | None, message: str) -> tuple[Event, bool]:
        return await self.publishes.publish_async(key, message, self.publish)

    async def since(self, last_event_id: int, limit: int) -> list[Event]:
        return self.log.since(last_event_id, limit)

    async def refresh(self) -> None:
        """Nothing to do: the counts are this process's own."""

    def on_wake(self, callback: Callable[[], None]) -> None:
        self.log.subscribe(lambda event: callback())

    async def start(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to disconnect."""

    def describe(self) -> dict[str, Any]:
        return {}


def open_shared_log(config: ServerConfig) -> tuple[SharedLog, EventLog | None]:
    """The log `config` names, and the local `EventLog` under it (None for a broker).

    `--broker redis://...` keeps it in Redis; otherwise `--store` decides (memory or SQLite).
    """
    if config.broker is not None:
        from servers.broker import open_broker  # imports redis only for a broker

        return open_broker(config), None
    log = open_log(config.store_choice, config.retention)
    return LocalLog(log), log
