"""A broker server's pub/sub listener: wake the waiters, reconnect with backoff, then backfill.

Redis pub/sub is at-most-once: a notification published while this server's subscription is
down is gone, and Redis does not say so. So a notification here only *wakes* the waiters; each
reads the stored log from its own cursor. When the subscription drops (`CLIENT KILL TYPE
pubsub`, a Redis restart), the listener reconnects with backoff, waits until Redis confirms the
new subscription, and then wakes every waiter once more: the **backfill**. Whatever was
published during the gap is in the log after their cursors, so they read it now, and nothing
is lost. redis-py's own silent reconnect is turned off (no retries) for that reason: it would
resubscribe without telling us, and the gap would go unnoticed.

`RelayStore` is the other design, WRONG ON PURPOSE, for notebook 08 (`--broker-mode relay`): a
server that keeps only the events relayed to it, with no backfill, and so loses the gap.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import random
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from servers.contract import Event

FIRST_BACKOFF_S = 0.05
MAX_BACKOFF_S = 2.0
CONFIRM_DEADLINE_S = 2.0  # Redis confirms a SUBSCRIBE within this long, or we try again

log = logging.getLogger("uvicorn.error")


class RelayStore:
    """The events a relay-mode server heard about, and nothing else (WRONG ON PURPOSE).

    It keeps each notification's payload. An event published while this server was not
    subscribed never arrives, so its id is simply missing here, and no client of this server
    will ever receive it. Ids are kept sorted; the newest `retention` are kept.
    """

    def __init__(self, retention: int) -> None:
        self.retention = retention
        self.events: list[Event] = []
        self.ids: list[int] = []

    @property
    def last_id(self) -> int:
        return self.ids[-1] if self.ids else 0

    @property
    def oldest_id(self) -> int:
        return self.ids[0] if self.ids else 0

    def add(self, event: Event) -> None:
        if event["id"] > self.last_id:
            self.events.append(event)
            self.ids.append(event["id"])
            if len(self.ids) > self.retention:
                del self.events[0], self.ids[0]

    def since(self, last_event_id: int, limit: int) -> list[Event]:
        start = bisect.bisect_right(self.ids, last_event_id)
        return self.events[start:start + limit]


class Listener:
    """One subscription to the log's channel, kept alive by a task (see the module docstring).

    `wake()` is called on every notification and after every (re)subscription. In relay mode,
    each payload goes into `relayed` instead, and there is no backfill.
    """

    def __init__(self, url: str, channel: str, wake: Callable[[], None],
                 relayed: RelayStore | None = None) -> None:
        self.channel = channel
        self.wake = wake
        self.relayed = relayed
        # No socket timeout (a quiet channel is not a dead one) and no silent retry (above).
        self.redis = aioredis.from_url(url, decode_responses=True, socket_connect_timeout=0.5,
                                       retry=Retry(NoBackoff(), 0))
        self.subscribed = False
        self.subscriptions = 0  # times it (re)subscribed: 1 + the reconnects
        self.notifications = 0
        self._task: asyncio.Task[None] | None = None
        self._first = asyncio.Event()

    async def start(self) -> None:
        """Start listening, and return once subscribed (or after CONFIRM_DEADLINE_S)."""
        self._task = asyncio.ensure_future(self._listen_forever())
        try:
            await asyncio.wait_for(self._first.wait(), CONFIRM_DEADLINE_S)
        except asyncio.TimeoutError:
            log.warning("broker: not subscribed to %s yet; still trying", self.channel)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.redis.aclose()

    def describe(self) -> dict[str, Any]:
        return {"subscribed": self.subscribed, "subscriptions": self.subscriptions,
                "notifications": self.notifications}

    async def _listen_forever(self) -> None:
        delay = FIRST_BACKOFF_S
        while True:
            try:
                await self._listen_once()
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                if self.subscribed:  # it was working: say so once, and back off from the start
                    log.warning("broker: subscription to %s lost (%s); reconnecting",
                                self.channel, exc or type(exc).__name__)
                    delay = FIRST_BACKOFF_S
            self.subscribed = False
            # Full jitter, so that servers cut off together do not all come back together.
            await asyncio.sleep(random.uniform(0, delay))
            delay = min(MAX_BACKOFF_S, delay * 2)

    async def _listen_once(self) -> None:
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            await asyncio.wait_for(self._confirmed(pubsub), CONFIRM_DEADLINE_S)
            self.subscribed = True
            self.subscriptions += 1
            self._first.set()
            if self.relayed is None:
                self.wake()  # BACKFILL: everyone re-reads the log from their cursors now
            async for message in pubsub.listen():
                if message["type"] == "message":
                    self._notified(message["data"])
        finally:
            # redis-py 7.4 to 8.1 leave aclose() unannotated (an ignore is needed), 8.2 annotates it
            await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]

    async def _confirmed(self, pubsub: aioredis.client.PubSub) -> None:
        """Return once Redis confirms the SUBSCRIBE: only from then on is nothing missed."""
        while True:
            message = await pubsub.get_message(timeout=CONFIRM_DEADLINE_S)
            if message is not None and message["type"] == "subscribe":
                return

    def _notified(self, payload: str) -> None:
        self.notifications += 1
        if self.relayed is not None:
            self.relayed.add(json.loads(payload))  # the payload is all a relay ever knows
        self.wake()
