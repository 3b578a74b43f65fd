"""The event log of several asyncio servers, kept in Redis: one stream, one id sequence for all.

`--broker redis://HOST:PORT/DB` makes `servers.fastapi_server` keep its log here instead of in
its own process (docs/broker.md has the design and the reasons):

* A publish is one atomic step, a Lua script: INCR the id, XADD the event to a Redis stream at
  the explicit id `<n>-0`, trim to retention, PUBLISH a notification. No other server can slip
  an event in between, and a notification is never sent for an event that is not stored.
* A read takes the events after a cursor from the stored stream (XRANGE), with the oldest kept
  id, in one script too, so a 410 is computed in the broker, exactly as on one server.
* The notification only wakes waiters (`servers.broker_listener`); what they send comes from
  the stored log, read from their own cursors. Pub/sub is at-most-once, the log is not.
* Redis that does not answer makes a request a 503 with `Retry-After` within about a second,
  never a hang or a 500, and the next request after it is back simply works.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from servers import idempotency
from servers.broker_listener import Listener, RelayStore
from servers.contract import DEFAULT_MESSAGE, ApiError, Event
from servers.eventlog import gone
from servers.startup import ServerConfig

SOCKET_TIMEOUT_S = 0.5  # one Redis command, or one connect, may take this long
CALL_DEADLINE_S = 1.5  # and a whole call (a retry included) this long, then 503
START_DEADLINE_S = 10.0  # a server starting with a broker waits this long for Redis
RETRY_AFTER_S = 1

T = TypeVar("T")

#: How both scripts begin: the log's stream id, or, when Redis has lost the log, a new log under
#: the fresh id in ARGV[fresh], so that no script ever mixes ids from two logs.
OPEN_LOG = """
local stream = redis.call('GET', KEYS[3])
if not stream then
  redis.call('DEL', KEYS[1], KEYS[2])
  stream = ARGV[{fresh}]
  redis.call('SET', KEYS[3], stream)
end
"""

#: KEYS: the id counter, the events (a stream), the log's stream id, and the Idempotency-Key's
#: record (or none). ARGV: the message as JSON, the timestamp, the retention, a fresh stream id
#: (used only if the log is new), the channel, how long a key is remembered (s).
PUBLISH = OPEN_LOG.format(fresh=4) + """if KEYS[4] then
  local earlier = redis.call('GET', KEYS[4])
  if earlier then return {stream, earlier, 'replayed'} end
end
local id = string.format('%d', redis.call('INCR', KEYS[1]))
local event = '{"id":' .. id .. ',"timestamp":' .. ARGV[2] .. ',"message":' .. ARGV[1] .. '}'
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], id .. '-0', 'e', event)
redis.call('PUBLISH', ARGV[5], event)
if KEYS[4] then redis.call('SET', KEYS[4], event, 'EX', ARGV[6]) end
return {stream, event}
"""

#: KEYS as PUBLISH. ARGV: the first stream id to read (`<cursor + 1>-0`), the limit, a fresh
#: stream id. Answers the log's stream id, newest id, oldest kept id, then the events' JSON.
READ = OPEN_LOG.format(fresh=3) + """local last = redis.call('GET', KEYS[1]) or '0'
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local oldest = '0'
if #first > 0 then oldest = string.match(first[1][1], '^%d+') end
local out = {stream, last, oldest}
for _, entry in ipairs(redis.call('XRANGE', KEYS[2], ARGV[1], '+', 'COUNT', ARGV[2])) do
  out[#out + 1] = entry[2][2]
end
return out
"""


def broker_unavailable(url: str) -> ApiError:
    return ApiError(
        503, "broker_unavailable",
        f"The Redis broker that holds the event log ({url}) does not answer; retry after the "
        "Retry-After seconds. If it stays down, start it again (launch_redis() in a notebook).",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def new_stream_id() -> str:
    return uuid.uuid4().hex[:12]


class BrokerLog:
    """A `servers.logs.SharedLog` in Redis: the log every server on one broker and key shares.

    `mode="relay"` is notebook 08's broken design, on purpose: reads come only from the
    notifications this server happened to receive (`RelayStore`), so it loses every event
    published while its pub/sub connection was down.
    """

    def __init__(self, url: str, key: str = "polling-lab", retention: int = 10_000,
                 mode: str = "log") -> None:
        self.url, self.key, self.retention, self.mode = url, key, retention, mode
        self.keys = [f"{key}:last_id", f"{key}:events", f"{key}:stream"]
        self.channel = f"{key}:published"
        # Short timeouts and one quick retry (a pooled connection that a Redis restart closed),
        # so that a broker that is down is a 503 within CALL_DEADLINE_S, not a hang.
        self.redis = aioredis.from_url(
            url, decode_responses=True, socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=SOCKET_TIMEOUT_S, retry=Retry(NoBackoff(), 1))
        self._publish = self.redis.register_script(PUBLISH)  # EVALSHA, EVAL after a restart
        self._read = self.redis.register_script(READ)
        self._stream = ""
        self._last_id = self._oldest_id = 0
        self._callbacks: list[Callable[[], None]] = []
        # One read per cursor between two wake-ups, shared by every waiter at that cursor.
        self._reads: dict[tuple[int, int], asyncio.Future[list[Event]]] = {}
        self.relayed = RelayStore(retention) if mode == "relay" else None
        self.listener = Listener(url, self.channel, self.wake, self.relayed)

    @property
    def stream(self) -> str:
        return self._stream

    @property
    def last_id(self) -> int:
        return self.relayed.last_id if self.relayed is not None else self._last_id

    @property
    def oldest_id(self) -> int:
        return self.relayed.oldest_id if self.relayed is not None else self._oldest_id

    def on_wake(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def wake(self) -> None:
        """Wake every waiter to read again from its cursor: a publish, or a backfill."""
        self._reads.clear()  # reads started before this wake may have missed what woke it
        for callback in self._callbacks:
            callback()

    async def _call(self, call: Awaitable[T]) -> T:
        """Await one Redis call; ApiError(503) if Redis fails or takes over CALL_DEADLINE_S."""
        try:
            return await asyncio.wait_for(call, CALL_DEADLINE_S)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            logging.getLogger("uvicorn.error").warning("broker %s: %s", self.url, exc)
            raise broker_unavailable(self.url) from exc

    def _adopt(self, stream: str) -> None:
        """Take the broker's stream id; a new one means Redis lost the log, so wake everyone."""
        changed = self._stream and stream != self._stream
        self._stream = stream
        if changed:
            self.wake()

    async def publish(self, message: str = DEFAULT_MESSAGE) -> Event:
        return (await self.publish_once(None, message))[0]

    async def publish_once(self, key: str | None, message: str) -> tuple[Event, bool]:
        """Publish through the Lua script, once per Idempotency-Key across every server.

        The key's record lives in Redis, so a retry that reaches another server is still a
        replay. This server's own waiters are woken at once; the others by the notification.
        """
        keys = self.keys if key is None else [*self.keys, f"{self.key}:idempotency:"
                                              f"{idempotency.check_key(key)}"]
        stream, raw, *replayed = await self._call(self._publish(keys=keys, args=[
            json.dumps(message, ensure_ascii=False), repr(time.time()), self.retention,
            new_stream_id(), self.channel, int(idempotency.DEFAULT_WINDOW_S)]))
        self._adopt(stream)
        event: Event = json.loads(raw)
        if replayed:
            idempotency.check_same_message(event["message"], message)
            return event, True
        self._last_id = max(self._last_id, event["id"])
        if self.relayed is None:
            self.wake()  # the notification will wake the others (and us, again: harmless)
        return event, False

    async def _read_after(self, last_event_id: int, limit: int) -> list[Event]:
        answer = await self._call(self._read(keys=self.keys, args=[
            f"{last_event_id + 1}-0", limit, new_stream_id()]))
        self._adopt(answer[0])
        self._last_id, self._oldest_id = int(answer[1]), int(answer[2])
        return [json.loads(raw) for raw in answer[3:]]

    async def since(self, last_event_id: int, limit: int) -> list[Event]:
        """The stored events after the cursor (relay mode: only those relayed to us)."""
        if self.relayed is not None:
            return self.relayed.since(last_event_id, limit)
        key = (last_event_id, limit)
        read = self._reads.get(key)
        if read is None:
            read = self._reads[key] = asyncio.ensure_future(self._read_after(*key))
            read.add_done_callback(lambda done: self._forget_failed(key, done))
        events = await asyncio.shield(read)  # one waiter leaving must not cancel the others' read
        if self._oldest_id and last_event_id < self._oldest_id - 1:
            raise gone(last_event_id, self._oldest_id)
        return events

    def _forget_failed(self, key: tuple[int, int], read: asyncio.Future[list[Event]]) -> None:
        """A failed read must not be reused: the next request tries Redis again."""
        if read.cancelled() or read.exception() is not None:
            if self._reads.get(key) is read:
                del self._reads[key]

    async def refresh(self) -> None:
        if self.relayed is None:
            await self._read_after(2**62, 1)  # no events: only the counts

    async def start(self) -> None:
        """Reach Redis (or exit saying so), create the shared stream id once, start listening."""
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            try:
                await self._read_after(2**62, 1)
                break
            except ApiError:
                if time.monotonic() > deadline:
                    raise SystemExit(
                        f"The Redis broker at {self.url} does not answer; start redis-server "
                        "(launch_redis() in a notebook, or apt-get install redis-server) and "
                        "try again.") from None
                await asyncio.sleep(0.2)
        await self.listener.start()

    async def close(self) -> None:
        await self.listener.stop()
        await self.redis.aclose()

    def describe(self) -> dict[str, Any]:
        return {"broker": {"url": self.url, "key": self.key, "mode": self.mode,
                           **self.listener.describe()}}


def open_broker(config: ServerConfig) -> BrokerLog:
    """The shared log `config.broker` and `config.broker_key` name."""
    assert config.broker is not None, "open_broker needs a --broker URL"
    return BrokerLog(config.broker, config.broker_key, config.retention, config.broker_mode)
