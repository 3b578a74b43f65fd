"""The counters behind `GET /stats`, the numbers a notebook plots (docs/api.md, "/stats")."""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from servers.contract import ApiError
from servers.limits import AtLimit, Budget


class LogCounts(Protocol):
    """What /stats reads of a log: an `EventLog`, or a broker's last known counts."""

    @property
    def stream(self) -> str: ...
    @property
    def last_id(self) -> int: ...
    @property
    def oldest_id(self) -> int: ...


def rss_bytes() -> int:
    """Resident memory of this process, from /proc where available."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the peak is the best we can do
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


@dataclass
class Stats:
    """The counters behind `/stats`. Thread-safe, because the Flask server is threaded.

    `max_waiting` is how many long polls may be held at once (more get 503); `settings` are
    start-up options a server reports as they are, for the lessons that are about them. A
    server started from its command line also passes its open-file `budget` (shown in /stats)
    and the `at_limit` line it writes when it refuses a poll for lack of room.
    """

    server: str
    log: LogCounts
    max_waiting: int = sys.maxsize
    settings: Mapping[str, Any] = field(default_factory=dict)
    budget: Budget | None = None
    at_limit: AtLimit | None = None
    requests: dict[str, int] = field(
        default_factory=lambda: {"events": 0, "poll_for_updates": 0, "trigger_event": 0}
    )
    empty_responses: int = 0
    waiting: int = 0
    peak_waiting: int = 0
    connections: int = 0  # TCP connections accepted since start
    streams: int = 0  # SSE and WebSocket connections open now (servers.streams)
    checks: int = 0  # looks at the log by held polls after a nap (the sleep loop only)
    replayed_publishes: int = 0  # publishes answered from an earlier one (Idempotency-Key)
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_request(self, endpoint: str) -> None:
        with self._lock:
            self.requests[endpoint] += 1

    def count_empty(self) -> None:
        with self._lock:
            self.empty_responses += 1

    def count_connection(self) -> None:
        """One more TCP connection accepted (a keep-alive connection counts once)."""
        with self._lock:
            self.connections += 1

    def count_check(self) -> None:
        """A held poll woke from its nap and looked at the log again (the naive server)."""
        with self._lock:
            self.checks += 1

    def count_replay(self) -> None:
        """A retried publish was answered with the event of the first (Idempotency-Key)."""
        with self._lock:
            self.replayed_publishes += 1

    def wait_started(self, limit: int | None = None) -> None:
        """Count one more held poll, or refuse it with 503 when `limit` are already held.

        `limit` defaults to `max_waiting`.
        """
        limit = self.max_waiting if limit is None else limit
        with self._lock:
            full = self.waiting >= limit
            if not full:
                self.waiting += 1
                self.peak_waiting = max(self.peak_waiting, self.waiting)
                return
        if self.at_limit is not None:
            self.at_limit.report(self._why_full(limit))
        raise ApiError(
            503,
            "too_many_waiting",
            f"This server already holds {limit} long polls, its limit; retry after the "
            "number of seconds in the Retry-After header.",
            headers={"Retry-After": "2"},
            close_connection=True,
        )

    def _why_full(self, limit: int) -> str:
        budget = self.budget
        if budget is not None and budget.capped and limit == budget.max_waiting:
            return (f"at the open-file limit: holding {limit} long polls, as many as "
                    f"{budget.open_files} open files allow while keeping {budget.margin} "
                    "connections for /health and publishers; more get 503 with Retry-After")
        return (f"at --max-waiting: holding {limit} long polls; more get 503 with "
                "Retry-After")

    def wait_ended(self) -> None:
        with self._lock:
            self.waiting -= 1

    def stream_opened(self) -> None:
        with self._lock:
            self.streams += 1

    def stream_closed(self) -> None:
        with self._lock:
            self.streams -= 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "server": self.server,
                "pid": os.getpid(),
                "stream": self.log.stream,
                "requests": dict(self.requests),
                "empty_responses": self.empty_responses,
                "events_published": self.log.last_id,
                "last_event_id": self.log.last_id,
                "oldest_event_id": self.log.oldest_id,
                "waiting": self.waiting,
                "peak_waiting": self.peak_waiting,
                "max_waiting": self.max_waiting,
                "streams": self.streams,
                "connections": self.connections,
                "checks": self.checks,
                "replayed_publishes": self.replayed_publishes,
                "threads": threading.active_count(),
                "rss_bytes": rss_bytes(),
                "uptime_s": round(time.monotonic() - self.started, 3),
                **(self.budget.stats() if self.budget is not None else {}),
                **self.settings,
            }
