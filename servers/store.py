"""A durable event log in SQLite (stdlib `sqlite3`), so a restarted server loses nothing.

With `--store sqlite:PATH`, a server keeps its `stream` id and its event ids across restarts,
so its clients resume from their cursors with nothing lost or duplicated. Reads still come from
memory: the database is written on publish and read once, at start.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from servers.contract import Event
from servers.eventlog import EventLog

StoreKind = Literal["memory", "sqlite"]


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


@dataclass(frozen=True)
class StoreChoice:
    """Where a server keeps its events: `memory` (a restart starts over) or a SQLite file.

    Spelled `memory` or `sqlite:PATH` on the command line; `parse` reads that spelling once,
    when the server's config is made, so a mistake is reported before anything starts.
    """

    kind: StoreKind = "memory"
    path: str = ""

    def __post_init__(self) -> None:
        if self.kind not in get_args(StoreKind):
            raise ValueError(f"store kind {self.kind!r} is not one of {get_args(StoreKind)}")
        if (self.kind == "sqlite") != bool(self.path):
            raise ValueError("a sqlite store needs a path, and only a sqlite store has one")

    @classmethod
    def parse(cls, text: str | None) -> StoreChoice:
        """Read `memory` (or None) or `sqlite:PATH`; raise ValueError saying what is understood."""
        if text is None or text == "memory":
            return cls()
        kind, _, path = text.partition(":")
        if kind != "sqlite" or not path:
            raise ValueError(f"--store {text!r} is not understood; use memory or sqlite:PATH "
                             "(for example sqlite:events.db)")
        return cls("sqlite", path)

    def __str__(self) -> str:
        return f"sqlite:{self.path}" if self.kind == "sqlite" else "memory"


def open_log(choice: StoreChoice, retention: int) -> EventLog:
    """The event log that `choice` names, keeping the newest `retention` events."""
    if choice.kind == "sqlite":
        return SqliteEventLog(choice.path, retention)
    return EventLog(retention)
