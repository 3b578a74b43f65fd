"""The hard limits a server lives under, planned once at start and reported in one line.

Every held poll costs the server one open file (its socket), and a process may open only so
many: often 1,024 unless it raises its own soft limit. A server that promises more held polls
than it has descriptors fails badly at the edge: its accept loop drops connections or spins,
and `/health` stops answering. So each server:

* raises its soft `RLIMIT_NOFILE` toward the hard one (`raise_open_file_limit`);
* plans a `Budget`: how many client connections it may have open, and how many of them may be
  held polls, keeping a margin for `/health`, publishers and 503 answers, and a reserve for
  what is not a client (the listening socket, the event loop, the log, the database);
* says at start what it planned (`Budget.describe`), shows it in `/stats` (`Budget.stats`), and,
  when it reaches a limit, says so once, in one line (`AtLimit`), not a traceback per request.
"""

from __future__ import annotations

import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Descriptors kept for what is not a client connection: the listening socket, the event
#: loop's own, stdin/stdout/stderr, the log, a SQLite store and its journal, /proc reads.
RESERVED_FDS = 48
#: Seconds in which a request line, its headers and its body must all arrive.
DEFAULT_REQUEST_TIMEOUT_S = 10.0
#: How often `AtLimit` repeats itself while a server stays at a limit.
AT_LIMIT_QUIET_S = 60.0


def raise_open_file_limit() -> tuple[int, int]:
    """Raise this process's soft open-file limit as far as the hard one allows; (soft, hard).

    A hard limit of "unlimited" is not a number the kernel accepts as a soft limit everywhere
    (macOS caps it), so try a few sizes from the largest down, and keep what works.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = [hard] if hard != resource.RLIM_INFINITY else [1 << 20, 65_536, 10_240]
    for target in wanted:
        if target <= soft:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)


@dataclass(frozen=True)
class Budget:
    """How a server shares out its open files: connections, held polls, and the margin.

    `fds_per_connection` is what one client connection can cost at once: 1 for uvicorn (the
    socket), 2 for werkzeug, which opens a selector for each request as it finishes it.
    """

    open_files: int  # the soft RLIMIT_NOFILE the server runs under
    hard_limit: int
    requested_max_waiting: int  # what --max-waiting asked for
    fds_per_connection: int = 1
    reserved: int = RESERVED_FDS

    def __post_init__(self) -> None:
        if self.connections - self.margin < 1:
            raise ValueError(
                f"An open-file limit of {self.open_files} leaves no room for a held poll "
                f"({self.reserved} descriptors are kept for the server itself); raise it with "
                "`ulimit -n 4096` before starting the server."
            )

    @property
    def connections(self) -> int:
        """Client connections open at once; beyond it, new ones wait to be accepted."""
        return max(0, (self.open_files - self.reserved) // self.fds_per_connection)

    @property
    def margin(self) -> int:
        """Connections kept from held polls, for /health, publishers and 503 answers."""
        return max(8, self.connections // 8)

    @property
    def max_waiting(self) -> int:
        """Held polls at once: what was asked, or less if the open files cannot carry it."""
        return min(self.requested_max_waiting, self.connections - self.margin)

    @property
    def max_threads(self) -> int:
        """For a server with a thread per connection: every held poll, plus the margin."""
        return self.max_waiting + self.margin

    @property
    def capped(self) -> bool:
        """True when the open-file limit, not --max-waiting, sets how many polls are held."""
        return self.max_waiting < self.requested_max_waiting

    def describe(self, name: str) -> str:
        """The start-up line that says what this server planned, and why."""
        line = (f"polling-lab {name}: open files {self.open_files} (hard {_n(self.hard_limit)}): "
                f"up to {self.connections} connections, {self.max_waiting} held polls")
        if self.capped:
            line += (f" (--max-waiting {self.requested_max_waiting} lowered to fit, keeping "
                     f"{self.margin} connections for /health, publishers and 503s)")
        return line

    def stats(self) -> dict[str, Any]:
        """What `/stats` shows of the budget (beside `max_waiting`)."""
        return {
            "open_files": {"limit": self.open_files, "hard_limit": _n(self.hard_limit),
                           "reserved": self.reserved, "connections": self.connections,
                           "margin": self.margin},
            "max_waiting_requested": self.requested_max_waiting,
        }


def _n(limit: int) -> int | str:
    return "unlimited" if limit == resource.RLIM_INFINITY else limit


def plan_budget(requested_max_waiting: int, fds_per_connection: int = 1) -> Budget:
    """Raise this process's open-file limit, then plan what it can hold."""
    soft, hard = raise_open_file_limit()
    return Budget(soft, hard, requested_max_waiting, fds_per_connection)


class AtLimit:
    """Says that the server is at a limit in one clear line, not once per refused request.

    The first `report` writes a line at once; later ones are counted, and said again (with the
    count) at most every `quiet_s` seconds. Thread-safe.
    """

    def __init__(self, name: str, quiet_s: float = AT_LIMIT_QUIET_S,
                 write: Callable[[str], object] | None = None) -> None:
        self.name = name
        self.quiet_s = quiet_s
        self.write = write or (lambda line: print(line, file=sys.stderr, flush=True))
        self.reports = 0
        self._unsaid = 0
        self._said_at: float | None = None
        self._lock = threading.Lock()

    def report(self, what: str) -> None:
        """Count one time the server was at a limit; `what` says which, and what it does."""
        with self._lock:
            self.reports += 1
            now = time.monotonic()
            if self._said_at is not None and now - self._said_at < self.quiet_s:
                self._unsaid += 1
                return
            also = f" ({self._unsaid} more times since the last line)" if self._unsaid else ""
            self._said_at, self._unsaid = now, 0
        self.write(f"polling-lab {self.name}: {what}{also}")
