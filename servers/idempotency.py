"""Idempotent publishing: a retried `POST /trigger_event` with the same key publishes once.

A publisher whose request timed out cannot tell whether the server published: the request may
have been lost on the way in, or only its answer on the way out. Retrying blindly can publish
twice. With an `Idempotency-Key: <unique string>` header (the kit's extension, after the IETF
draft "The Idempotency-Key HTTP Header Field"), the server remembers what it answered for each
key for `window_s` seconds (at most `max_keys` keys), and answers a repeat with the same event
instead of publishing again. docs/api.md describes it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from servers.contract import ApiError, Event

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"  # "true" on an answer that repeats an earlier one
MAX_KEY_CHARS = 255
DEFAULT_WINDOW_S = 600.0
DEFAULT_MAX_KEYS = 10_000


@dataclass(frozen=True)
class _Published:
    at: float  # time.monotonic() of the first publish
    message: str
    event: Event


def check_key(key: str) -> str:
    """The key if it is 1 to 255 visible ASCII characters; else ApiError(400)."""
    if not (1 <= len(key) <= MAX_KEY_CHARS and all("!" <= c <= "~" for c in key)):
        raise ApiError(
            400, "bad_idempotency_key",
            f"{HEADER} must be 1 to {MAX_KEY_CHARS} visible ASCII characters (no spaces); "
            "a random one per publish, such as uuid.uuid4().hex, is what it is for.",
        )
    return key


def check_same_message(earlier: str, message: str, window_s: float = DEFAULT_WINDOW_S) -> None:
    """Refuse a key used again for another message (ApiError 422): one key names one publish."""
    if earlier != message:
        raise ApiError(
            422, "idempotency_key_reused",
            f"This {HEADER} was already used, within the last {window_s:g} s, to publish a "
            "different message; use a new key for each new publish, and the same key only "
            "to retry it.",
        )


class RecentPublishes:
    """The events published under each `Idempotency-Key` in the last `window_s` seconds.

    Thread-safe; the publish itself runs under the lock, so two requests with the same key
    racing each other still publish once.
    """

    def __init__(self, window_s: float = DEFAULT_WINDOW_S,
                 max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if window_s <= 0 or max_keys < 1:
            raise ValueError("window_s must be positive and max_keys at least 1")
        self.window_s = window_s
        self.max_keys = max_keys
        self.replays = 0
        self._by_key: OrderedDict[str, _Published] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: dict[str, asyncio.Future[None]] = {}  # keys publishing now (asyncio)

    def publish(self, key: str | None, message: str,
                publish: Callable[[str], Event]) -> tuple[Event, bool]:
        """Publish `message` unless `key` already did; return (event, whether it is a replay).

        Raises ApiError(400) for a malformed key, and ApiError(422) when the key was used for
        a different message (a client bug: one key must name one publish).
        """
        if key is None:
            return publish(message), False
        check_key(key)
        with self._lock:
            earlier = self._earlier(key, message)
            if earlier is not None:
                return earlier, True
            event = publish(message)
            self._by_key[key] = _Published(time.monotonic(), message, event)
            return event, False

    async def publish_async(self, key: str | None, message: str,
                            publish: Callable[[str], Awaitable[Event]]) -> tuple[Event, bool]:
        """`publish` for an asyncio server whose log is awaited (`servers.logs.SharedLog`).

        Must run on the event loop's thread. A request whose key's first publish is still in
        flight waits for that one to end, then answers as a replay: it too publishes once.
        """
        if key is None:
            return await publish(message), False
        check_key(key)
        while (pending := self._pending.get(key)) is not None:
            await asyncio.wait((pending,))
        with self._lock:
            earlier = self._earlier(key, message)
        if earlier is not None:
            return earlier, True
        self._pending[key] = asyncio.get_running_loop().create_future()
        try:
            event = await publish(message)
            with self._lock:
                self._by_key[key] = _Published(time.monotonic(), message, event)
            return event, False
        finally:
            self._pending.pop(key).set_result(None)

    def _earlier(self, key: str, message: str) -> Event | None:
        """The event `key` published within the window, or None; hold the lock."""
        self._forget_old(time.monotonic())
        earlier = self._by_key.get(key)
        if earlier is None:
            return None
        check_same_message(earlier.message, message, self.window_s)
        self.replays += 1
        return earlier.event

    def _forget_old(self, now: float) -> None:
        by_key = self._by_key
        while by_key and (len(by_key) >= self.max_keys
                          or now - next(iter(by_key.values())).at > self.window_s):
            by_key.popitem(last=False)
