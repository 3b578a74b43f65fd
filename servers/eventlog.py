"""The in-memory event log every bundled server keeps: bounded, thread-safe, consecutive ids.

`servers.store` keeps the same log in a SQLite file, so that it survives a restart.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from servers.contract import DEFAULT_LIMIT, DEFAULT_MESSAGE, ApiError, Event


class EventLog:
    """An in-memory, bounded, thread-safe log of events with consecutive ids.

    Ids are consecutive, so the events after a cursor start at a computed index: reading what a
    waiter has missed costs O(new events), never a scan of the whole log (the article's servers
    filter the whole list on every check). Only the newest `retention` events are kept; a cursor
    older than that gets 410 so the client knows it missed something.
    """

    def __init__(self, retention: int = 10_000) -> None:
        if retention < 1:
            raise ValueError("retention must be at least 1 event")
        self.retention = retention
        self.stream = uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._first_id = 1  # id of self._events[0] (or of the next event, while empty)
        self._on_publish: list[Callable[[Event], None]] = []

    @property
    def last_id(self) -> int:
        return self._first_id + len(self._events) - 1

    @property
    def oldest_id(self) -> int:
        """Id of the oldest retained event, 0 while nothing was ever published."""
        return self._oldest_kept() if self._events else 0

    def _oldest_kept(self) -> int:
        return max(self._first_id, self.last_id - self.retention + 1)

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        """Call `callback(event)` after each publish, in the publishing thread."""
        self._on_publish.append(callback)

    def publish(self, message: str = DEFAULT_MESSAGE) -> Event:
        with self._lock:
            event: Event = {"id": self.last_id + 1, "timestamp": time.time(), "message": message}
            self._store(event)
            self._events.append(event)
            excess = len(self._events) - self.retention
            # Trim in batches, so that deleting from the front of the list stays amortised O(1).
            if excess >= max(1, self.retention // 4):
                del self._events[:excess]
                self._first_id += excess
                self._forget_before(self._first_id)
        for callback in self._on_publish:
            callback(event)
        return event

    def _store(self, event: Event) -> None:
        """Persist a new event before it becomes visible; in memory, there is nothing to do."""

    def _forget_before(self, first_kept_id: int) -> None:
        """Drop persisted events older than the retention window; in memory, nothing to do."""

    def since(self, last_event_id: int, limit: int = DEFAULT_LIMIT) -> list[Event]:
        """The events with id > last_event_id, oldest first, at most `limit`.

        Raises ApiError(410) when events after the cursor are no longer retained.
        """
        with self._lock:
            oldest_kept = self._oldest_kept()
            if self._events and last_event_id < oldest_kept - 1:
                raise gone(last_event_id, oldest_kept)
            start = max(last_event_id + 1, oldest_kept) - self._first_id
            return self._events[start : start + limit]


def gone(last_event_id: int, oldest_kept: int) -> ApiError:
    """The 410 for a cursor older than retention: every log, local or shared, answers this."""
    return ApiError(
        410,
        "gone",
        f"Events after id {last_event_id} are no longer kept; the oldest kept is "
        f"{oldest_kept}. Resync from last_event_id={oldest_kept - 1} and record the gap.",
        oldest_id=oldest_kept,
    )
