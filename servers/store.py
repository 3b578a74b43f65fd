"""A durable event log in SQLite (stdlib `sqlite3`), so a restarted server loses nothing.

With `--store sqlite:PATH`, a server keeps its `stream` id and its event ids across restarts,
so its clients resume from their cursors with nothing lost or duplicated. Reads still come from
memory: the database is written on publish and read once, at start.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from servers.eventlog import Event, EventLog


class SqliteEventLog(EventLog):
    """An EventLog whose events and stream id live in a SQLite file."""

    def __init__(self, path: str | Path, retention: int = 10_000) -> None:
        super().__init__(retention)
        # One connection shared by the server's threads; EventLog's lock serialises its use.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS events "
            "(id INTEGER PRIMARY KEY, timestamp REAL NOT NULL, message TEXT NOT NULL)"
        )
        row = self._db.execute("SELECT value FROM meta WHERE key = 'stream'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('stream', ?)", (self.stream,))
        else:
            self.stream = row[0]
        rows = self._db.execute(
            "SELECT id, timestamp, message FROM events ORDER BY id DESC LIMIT ?", (retention,)
        ).fetchall()
        self._events = [Event(id=i, timestamp=t, message=m) for i, t, m in reversed(rows)]
        if self._events:
            self._first_id = self._events[0]["id"]

    def _store(self, event: Event) -> None:
        self._db.execute(
            "INSERT INTO events (id, timestamp, message) VALUES (?, ?, ?)",
            (event["id"], event["timestamp"], event["message"]),
        )

    def _forget_before(self, first_kept_id: int) -> None:
        self._db.execute("DELETE FROM events WHERE id < ?", (first_kept_id,))

    def close(self) -> None:
        self._db.close()


def open_log(store: str | None, retention: int) -> EventLog:
    """The event log a `--store` option asks for: None or "memory", or "sqlite:PATH"."""
    if store in (None, "memory"):
        return EventLog(retention)
    assert store is not None
    kind, _, path = store.partition(":")
    if kind != "sqlite" or not path:
        raise ValueError(f"--store {store!r} is not understood; use memory or sqlite:PATH")
    return SqliteEventLog(path, retention)
