"""An experiment: clients of one strategy against one server, events published at a rate.

This is the engine behind every panel and every measured number in the notebooks. A widget
button and a scripted call end in the same methods (`trigger`, `start`, `stop`, `run`), so what
CI measures headless is what a learner sees when clicking.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from helpers.clients import LongPollClient, PollClient, ShortPollClient
from helpers.kinds import Strategy
from helpers.launcher import ServerHandle
from helpers.metrics import Metrics
from helpers.swarm import Swarm


def headless() -> bool:
    """True when a notebook should shrink its long live runs (under nbval, and in the browser
    test's JupyterLab), false for a learner in JupyterLab.

    Set explicitly (POLLING_LAB_HEADLESS=1) by the project's pytest configuration, so a cell can
    shrink a long live run without guessing from errors.
    """
    return os.environ.get("POLLING_LAB_HEADLESS") == "1"


def wait_until(predicate: Callable[[], object], timeout: float = 5.0,
               interval: float = 0.01) -> bool:
    """Check `predicate` every `interval` seconds until it is true (True) or `timeout` seconds
    have passed (False). A cell waits for what it is about to count, never a fixed time:

        wait_until(lambda: server.stats()["waiting"] >= 100, timeout=10)
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def unattended() -> bool:
    """True when nobody is watching the notebook (under nbval), so its last cell may stop
    everything; false in JupyterLab, the browser test's included, where panels must stay live.

    Set explicitly (POLLING_LAB_UNATTENDED=1) by the project's pytest configuration only.
    """
    return os.environ.get("POLLING_LAB_UNATTENDED") == "1"


@dataclass
class Settings:
    """The knobs a learner turns. `rate` is events per second published by the auto-trigger."""

    strategy: Strategy = "long"
    interval: float = 1.0  # short polling: seconds between requests
    hold: float = 10.0  # long polling: how long the server may hold a request
    rate: float = 0.0  # auto-trigger, events per second (0: only manual triggers)
    clients: int = 1  # more than one runs a Swarm

    def __post_init__(self) -> None:
        if self.strategy not in ("short", "long"):
            raise ValueError('strategy must be "short" or "long"')
        if self.interval <= 0 or self.hold < 0 or self.rate < 0 or self.clients < 1:
            raise ValueError("interval must be > 0; hold and rate >= 0; clients >= 1")


def auto_trigger(stop: threading.Event, rate: Callable[[], float],
                 trigger: Callable[[], object]) -> None:
    """Call `trigger()` about `rate()` times a second until `stop` is set (a thread's target).

    The rate is read again before every gap, so a slider moved while running applies at once;
    while it is 0, nothing is published until it is raised.
    """
    rng = random.Random()
    while not stop.is_set():
        current = rate()
        if current <= 0:
            stop.wait(0.2)  # the rate may be raised while running
            continue
        # Gaps average 1/rate but vary, so events fall at every phase of a polling cycle.
        if stop.wait(rng.uniform(0.5, 1.5) / current):
            return
        trigger()


class Experiment:
    """Clients polling `server` with one strategy, plus an optional auto-trigger."""

    def __init__(self, server: ServerHandle, settings: Settings | None = None,
                 **changes: Any) -> None:
        self.server = server
        self.settings = settings or Settings()
        if changes:
            self.configure(**changes)
        self.metrics = Metrics()
        self.triggered = 0
        self._clients: PollClient | Swarm | None = None
        self._stop_trigger = threading.Event()
        self._trigger_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.trigger_errors = 0

    def configure(self, **changes: Any) -> None:
        """Change settings (`interval`, `hold`, `rate`, ...); clients pick them up on restart."""
        self.settings = Settings(**{**vars(self.settings), **changes})

    @property
    def running(self) -> bool:
        return self._clients is not None

    def trigger(self, message: str | None = None) -> dict[str, Any]:
        """Publish one event on the server: what the "Trigger event" button does."""
        with self._lock:
            self.triggered += 1
        return self.server.trigger(message)

    def start(self) -> None:
        """Start the clients (from the server's latest event on) and the auto-trigger."""
        if self.running:
            return
        s = self.settings
        now = self.server.stats()["last_event_id"]
        if s.clients > 1:
            self._clients = Swarm(self.server.url, s.clients, s.strategy, interval=s.interval,
                                  hold=s.hold, metrics=self.metrics, last_event_id=now).start()
        elif s.strategy == "short":
            self._clients = ShortPollClient(self.server.url, s.interval, metrics=self.metrics,
                                            last_event_id=now, verify=self.server.verify).start()
        else:
            self._clients = LongPollClient(self.server.url, s.hold, metrics=self.metrics,
                                           last_event_id=now, verify=self.server.verify).start()
        self._stop_trigger.clear()
        self._trigger_thread = threading.Thread(
            target=auto_trigger, args=(self._stop_trigger, lambda: self.settings.rate,
                                       self._auto_trigger_once),
            daemon=True, name="auto-trigger")
        self._trigger_thread.start()

    def stop(self) -> None:
        """Stop the auto-trigger and the clients. Metrics are kept until `reset()`."""
        self._stop_trigger.set()
        if self._trigger_thread is not None:
            self._trigger_thread.join(2)
        if self._clients is not None:
            self._clients.stop()
            self._clients = None

    def reset(self) -> None:
        """Forget the measurements (a running experiment keeps running)."""
        self.metrics.reset()
        with self._lock:
            self.triggered = 0

    def settle_time(self) -> float:
        """How long after the last trigger its delivery can take, for this strategy."""
        s = self.settings
        if s.strategy == "short":
            return s.interval + 0.3
        return (self.server.check_interval or 0.0) + 0.5

    def run(self, seconds: float, rate: float | None = None,
            progress: Callable[[float], None] | None = None) -> dict[str, Any]:
        """Measure for `seconds` from a clean slate, then wait for the last deliveries.

        Returns `summary()`. `progress(fraction)` is called about 10 times a second.
        """
        if rate is not None:
            self.configure(rate=rate)
        self.stop()
        self.reset()
        self.start()
        started = time.monotonic()
        try:
            while (elapsed := time.monotonic() - started) < seconds:
                if progress:
                    progress(elapsed / seconds)
                time.sleep(min(0.1, seconds - elapsed))
            self._stop_trigger.set()  # no new events; let the last ones arrive
            time.sleep(self.settle_time())
        finally:
            self.stop()
        if progress:
            progress(1.0)
        return self.summary()

    def summary(self) -> dict[str, Any]:
        """Metrics summary plus what was triggered and the settings used."""
        with self._lock:
            triggered = self.triggered
        return {**self.metrics.summary(), "triggered": triggered, **vars(self.settings),
                "server": self.server.kind}

    def _auto_trigger_once(self) -> None:
        try:
            self.trigger()
        except Exception:  # noqa: BLE001 - counted and shown, never printed from a thread
            with self._lock:
                self.trigger_errors += 1


def measure(server: ServerHandle, seconds: float, **settings: Any) -> dict[str, Any]:
    """Run one experiment for `seconds` and return its summary (see `Experiment.run`)."""
    return Experiment(server, **settings).run(seconds)
