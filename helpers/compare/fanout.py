"""The shared trigger: one moment, read once on this process's clock, handed to every lane.

Each lane's publisher posts it to its own server (see `Lane`), and each server's own timestamp
comes back here, so that how far apart the servers stamped the same event (the publish skew)
can be measured. The auto-trigger fires fan-outs at the scenario's rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from helpers.compare.results import PublishSkew, Skew
from helpers.experiment import auto_trigger


@dataclass
class Job:
    """One fan-out as one lane's publisher receives it."""

    seq: int
    at: float  # the fan-out moment, time.time()
    message: str
    epoch: int  # the lane's measurement when triggered: a reset or restart starts a new one
    generation: int  # the lane's server process when triggered: a restart starts a new one


@dataclass
class FanOut:
    """One trigger as every lane saw it: the shared moment and each server's own timestamp."""

    seq: int
    at: float
    stamps: dict[str, float] = field(default_factory=dict)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)

    def skew_ms(self) -> float:
        """max − min of the servers' own timestamps for this event (nan below two lanes)."""
        if len(self.stamps) < 2:
            return float("nan")
        return (max(self.stamps.values()) - min(self.stamps.values())) * 1000


class Publisher(Protocol):
    """What the trigger needs of a lane: which measurement and server it is on, and a queue."""

    @property
    def epoch(self) -> int: ...

    @property
    def generation(self) -> int: ...

    def submit(self, job: Job) -> None: ...


class SharedTrigger:
    """Fan-outs to every lane, the server stamps they came back with, and the auto-trigger."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seq = 0
        self.triggered = 0  # fan-outs since the last reset
        self.fanouts: dict[int, FanOut] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def fire(self, lanes: Mapping[str, Publisher], message: str | None = None,
             wait: float = 0.0) -> FanOut:
        """Hand one moment to every lane's publisher; with `wait`, wait for every stamp."""
        with self._lock:
            self._seq += 1
            self.triggered += 1
            seq = self._seq
            fanout = self.fanouts[seq] = FanOut(seq, time.time())
        text = message or f"event #{seq}"
        for lane in lanes.values():
            lane.submit(Job(seq, fanout.at, text, lane.epoch, lane.generation))
        deadline = time.monotonic() + wait
        while len(fanout.stamps) < len(lanes) and time.monotonic() < deadline:
            time.sleep(0.005)
        return fanout

    def record_stamp(self, lane: str, job: Job, event: dict[str, Any]) -> None:
        """Keep `lane`'s server timestamp for the fan-out `job` came from (a lane calls this)."""
        with self._lock:
            fanout = self.fanouts.get(job.seq)
            if fanout is not None and fanout.at == job.at:
                fanout.stamps[lane] = float(event["timestamp"])
                fanout.events[lane] = event

    def reset(self) -> None:
        """Forget the fan-outs; ones still in flight will find nothing to stamp."""
        with self._lock:
            self.triggered = 0
            self.fanouts = {}

    def start_auto(self, rate: Callable[[], float], fire: Callable[[], object]) -> None:
        """Call `fire()` about `rate()` times a second from a thread, until `stop_auto()`."""
        self._stop.clear()
        self._thread = threading.Thread(target=auto_trigger, args=(self._stop, rate, fire),
                                        daemon=True, name="compare-trigger")
        self._thread.start()

    def stop_auto(self, join: float = 0.0) -> None:
        """Stop the auto-trigger; with `join`, wait up to that long for its thread to end."""
        self._stop.set()
        if join and self._thread is not None:
            self._thread.join(join)

    def skew(self, lanes: Iterable[str], concurrent: Iterable[str]) -> PublishSkew:
        """How far apart the servers stamped the same event: max − min, per fan-out, in ms.

        `all` covers every lane in `lanes`; `concurrent` only those named there, leaving out
        single-threaded lanes, whose stamps are late whenever their one thread is busy holding
        a poll (see their publish lag).
        """
        with self._lock:
            fanouts = list(self.fanouts.values())
        names = list(lanes)

        def across(group: set[str]) -> Skew:
            skews = [(max(v) - min(v)) * 1000 for f in fanouts
                     if len(v := [t for n, t in f.stamps.items() if n in group]) == len(group)
                     and len(group) >= 2]
            return Skew.of(skews, lanes=tuple(n for n in names if n in group),
                           events=len(skews))

        return PublishSkew(fanouts=len(fanouts), all=across(set(names)),
                           concurrent=across(set(concurrent)))
