"""The measurement over time: when it started, when triggering ended, when it stopped, and a
sample every TICK_S of each lane's requests per second and the load generator's CPU.

The load generator is this process (publishers, views) plus its swarm host (every lane's
clients, `helpers.swarm`). Its CPU is part of what a comparison measures: near a full core,
latencies include time the clients waited for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from helpers.compare.results import TimelinePoint
from helpers.swarm import load_generator_cpu_seconds

TICK_S = 0.5  # how often the timeline and the server stats are sampled
RATE_WINDOW_S = 2.0  # the timeline's requests/s and CPU % are averaged over this window


class Timeline:
    """The clock of one measurement and its samples; `requests()` reads each lane's count."""

    def __init__(self, requests: Callable[[], dict[str, int]]) -> None:
        self._requests = requests
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.restart(running=False)

    def restart(self, running: bool) -> None:
        """Measure afresh from now; a stopped measurement counts as stopped at once."""
        with self._lock:
            self.started_at = time.time()
            self._cpu_at_start = self._cpu_stopped = load_generator_cpu_seconds()
            # (monotonic time, CPU seconds, requests per lane) of recent samples; the lanes'
            # Metrics restart at 0 with the measurement
            self._samples: list[tuple[float, float, dict[str, int]]] = [
                (time.monotonic(), self._cpu_at_start, {})]
            self.points: list[TimelinePoint] = []
            self.stopped_at: float | None = None if running else time.time()
            self.trigger_end: float | None = self.stopped_at  # when triggering stopped
            self.requests_at_trigger_end: dict[str, int] = {}  # each lane's, at that moment

    def end_triggering(self) -> None:
        """Mark the end of triggering: requests per second are counted up to this moment."""
        if self.trigger_end is None:
            self.requests_at_trigger_end = self._requests()
            self.trigger_end = time.time()

    def start(self) -> None:
        """Sample every TICK_S from a thread until `stop()`."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._tick_loop, daemon=True,
                                        name="compare-ticker")
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling (the measurement's numbers stay)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)

    def freeze(self) -> None:
        """Take a last sample and stop the clock: the measurement ended."""
        self.sample()
        self.stopped_at = time.time()

    def requests_per_s(self, lane: str, requests_now: int) -> float:
        """`lane`'s requests per second while events were triggered (up to now, until then)."""
        ended = self.trigger_end is not None
        requests = self.requests_at_trigger_end.get(lane, 0) if ended else requests_now
        return requests / self.trigger_seconds()

    def trigger_seconds(self) -> float:
        """Seconds from the start until triggering stopped (or until now)."""
        end = self.trigger_end if self.trigger_end is not None else time.time()
        return max(end - self.started_at, 1e-9)

    def elapsed(self) -> float:
        """Seconds measured since the start (up to the stop, once stopped)."""
        end = self.stopped_at if self.stopped_at is not None else time.time()
        return max(end - self.started_at, 1e-9)

    def kernel_cpu_pct(self) -> float:
        """This process's CPU use since the start, as % of one core (the load generator)."""
        now = self._cpu_stopped if self.stopped_at is not None else load_generator_cpu_seconds()
        return 100 * (now - self._cpu_at_start) / self.elapsed()

    def recent_kernel_cpu_pct(self) -> float:
        """This process's CPU use over the last RATE_WINDOW_S seconds, as % of one core."""
        points = self.points
        return points[-1].kernel_cpu_pct if points else float("nan")

    def _tick_loop(self) -> None:
        while not self._stop.wait(TICK_S):
            self.sample()

    def sample(self) -> None:
        """Append one point: requests per second per lane, and the load generator's CPU.

        Both are averaged over the last RATE_WINDOW_S seconds, so that a few clients polling
        once a second draw a readable line rather than a comb.
        """
        current = self._requests()
        with self._lock:
            now, cpu = time.monotonic(), load_generator_cpu_seconds()
            self._samples.append((now, cpu, current))
            while len(self._samples) > 2 and self._samples[1][0] <= now - RATE_WINDOW_S:
                self._samples.pop(0)
            then, cpu_then, counts = self._samples[0]
            dt = max(now - then, 1e-9)
            self.points.append(TimelinePoint(
                t=round(time.time() - self.started_at, 3),
                requests=current,
                requests_per_s={n: max(0, c - counts.get(n, 0)) / dt
                                for n, c in current.items()},
                kernel_cpu_pct=100 * (cpu - cpu_then) / dt,
            ))
            self._cpu_stopped = cpu
