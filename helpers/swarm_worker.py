"""The swarms' own process: their clients run here and report to the kernel through a pipe.

`helpers.swarm` starts this module's `main` once per kernel, in a new Python process, and talks
to it over a pipe. Each swarm the kernel starts runs here as a `SwarmEngine` whose
`Metrics` is a `RecordingMetrics`: every call a client makes on it (a request counted, events
received with their receive time, an error) is kept in order, and every `FLUSH_S` the host sends
what was kept, with the clients' new attempts, errors and cursor positions, as one batch. The
kernel replays those calls on its own `Metrics`, so a panel, a summary and a latency percentile
read what they read when the clients ran in the kernel: receive times are still the client's,
taken the moment its answer was read, only in this process.

Commands, each naming a swarm by the kernel's number for it: ("start", sid, options, places,
client ids), ("kill", sid, request, n, restart, down_for, rng), ("stop", sid, timeout). Replies:
("ready", sid), ("batch", sid, Batch), ("killed", sid, request, names, rng state),
("stopped", sid). The host exits on ("exit", None), or when the kernel's end of the pipe closes
(the kernel died).
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from helpers.errors import PollError
from helpers.metrics import Metrics
from helpers.swarm_engine import Attempt, SwarmEngine
from servers.contract import Event

FLUSH_S = 0.01  # how often the host reports: the kernel sees a delivery at most this late

# A client's place, as the kernel's copy of its cursor needs it: (last_event_id, stream id).
Place = tuple[int, "str | None"]


@dataclass
class Batch:
    """What a swarm's clients did since the previous batch."""

    counts: dict[str, int] = field(default_factory=dict)  # counter method name -> calls
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)  # in order
    attempts: list[Attempt] = field(default_factory=list)
    errors: list[PollError] = field(default_factory=list)
    places: dict[int, Place] = field(default_factory=dict)  # cursor index -> its new place


class RecordingMetrics(Metrics):
    """A `Metrics` that also keeps every call the clients make, for `take()` to hand on."""

    COUNTERS = ("count_request", "count_empty", "count_gateway_timeout", "count_rate_limited")

    def __init__(self) -> None:
        self._kept = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._calls: list[tuple[str, tuple[Any, ...]]] = []
        super().__init__()

    def take(self) -> tuple[dict[str, int], list[tuple[str, tuple[Any, ...]]]]:
        """The calls kept since the last `take()`, and forget them."""
        with self._kept:
            counts, calls = dict(self._counts), self._calls
            self._counts, self._calls = Counter(), []
        return counts, calls

    def _count(self, name: str) -> None:
        with self._kept:
            self._counts[name] += 1

    def _keep(self, name: str, *args: Any) -> None:
        with self._kept:
            self._calls.append((name, args))

    # Only what a client calls is kept; the host never reads its own figures.
    def count_request(self) -> None:
        self._count("count_request")

    def count_empty(self) -> None:
        self._count("count_empty")

    def count_gateway_timeout(self) -> None:
        self._count("count_gateway_timeout")

    def count_rate_limited(self) -> None:
        self._count("count_rate_limited")

    def record_error(self, message: str) -> None:
        self._keep("record_error", message)

    def record_events(self, client: Hashable, events: Sequence[Event], received_at: float) -> None:
        self._keep("record_events", client, list(events), received_at)

    def start_client(self, client: Hashable, last_event_id: int) -> None:
        self._keep("start_client", client, last_event_id)

    def record_gap(self, client: Hashable, resume_after: int) -> None:
        self._keep("record_gap", client, resume_after)

    def record_stream_reset(self, client: Hashable) -> None:
        self._keep("record_stream_reset", client)


def replay(batch: Batch, metrics: Metrics) -> None:
    """Make the same calls on the kernel's `metrics` that the host's clients made."""
    for name, times in batch.counts.items():
        count = getattr(metrics, name)
        for _ in range(times):
            count()
    for name, args in batch.calls:
        getattr(metrics, name)(*args)


class Reporter:
    """Turns what one swarm's engine did into batches: only what changed since the last one."""

    def __init__(self, engine: SwarmEngine, metrics: RecordingMetrics) -> None:
        self.engine = engine
        self.metrics = metrics
        self.places: list[Place] = [(c.last_event_id, c.stream) for c in engine.cursors]
        self.attempts_sent = 0
        self.errors_sent = 0

    def batch(self) -> Batch | None:
        engine = self.engine
        counts, calls = self.metrics.take()
        attempts = engine.attempts[self.attempts_sent:]
        errors = engine.errors[self.errors_sent:]
        self.attempts_sent += len(attempts)
        self.errors_sent += len(errors)
        places: dict[int, Place] = {}
        # A cursor's id moves only on an answer, and every answer is counted or recorded: while
        # every poll is held there is nothing to look at (10,000 cursors, every FLUSH_S). The
        # stream id an SSE or WebSocket connection adopts reaches the kernel with its first event.
        for i, cursor in enumerate(engine.cursors if counts or calls else ()):
            place = (cursor.last_event_id, cursor.stream)
            if place != self.places[i]:
                places[i] = self.places[i] = place
        if not (counts or calls or attempts or errors or places):
            return None
        return Batch(counts, calls, attempts, errors, places)


def main(fd: int) -> None:
    """The host's whole life: run the swarms the kernel asks for until the kernel goes away."""
    try:
        import uvloop  # one of uvicorn[standard]'s dependencies; plain asyncio without it
    except ImportError:
        pass
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    conn = Connection(fd)
    swarms: dict[int, Reporter] = {}
    try:
        while _serve(conn, swarms):
            for sid, reporter in swarms.items():
                _flush(conn, sid, reporter)
    finally:
        for reporter in swarms.values():
            reporter.engine.stop()
        conn.close()


def _start(options: dict[str, Any], places: list[Place],
           client_ids: list[str | None]) -> Reporter:
    metrics = RecordingMetrics()
    engine = SwarmEngine(metrics=metrics, **options)
    for cursor, place, client_id in zip(engine.cursors, places, client_ids, strict=True):
        (cursor.last_event_id, cursor.stream), cursor.client_id = place, client_id
    metrics.take()  # the cursors' start_client calls: the kernel's cursors made them already
    reporter = Reporter(engine, metrics)
    engine.start()
    return reporter


def _serve(conn: Connection, swarms: dict[int, Reporter]) -> bool:
    """Wait up to FLUSH_S for the kernel's next command and carry it out; False: stop now."""
    command: str
    try:
        if not conn.poll(FLUSH_S):
            return True
        command, sid, *args = conn.recv()
    except (EOFError, OSError):  # the kernel is gone: nobody to report to
        return False
    if command == "start":
        swarms[sid] = _start(*args)
        conn.send(("ready", sid))
    elif command == "kill":
        request, n, restart, down_for, rng = args
        names = swarms[sid].engine.kill(n, restart=restart, down_for=down_for, rng=rng)
        conn.send(("killed", sid, request, names, rng.getstate()))
    elif command == "stop" and sid in swarms:
        reporter = swarms.pop(sid)
        reporter.engine.stop(*args)
        _flush(conn, sid, reporter)
        conn.send(("stopped", sid))
    return command != "exit"


def _flush(conn: Connection, sid: int, reporter: Reporter) -> None:
    batch = reporter.batch()
    if batch is not None:
        conn.send(("batch", sid, batch))

