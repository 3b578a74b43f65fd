"""Every strategy side by side: one lane per strategy, each with its own server and clients.

    with Comparison() as lab:                  # four servers, one per lane
        lab.configure(clients=20, rate=0.2)
        results = lab.run(seconds=30)

A lane is a server, a `Swarm` of clients of one strategy, and a publisher (`lane.py`). One
trigger is a *fan-out* (`fanout.py`): its moment is read once, on this process's clock, and
handed to every lane's publisher, and each publisher posts it to its own server over a
connection it keeps open. Each lane is a separate server on purpose (a shared event source would
add a relay, whose own delay would be measured instead of the strategy's), so latency is
measured from that one shared moment: every lane is timed against the same instant, and a server
that is slow even to *accept* the trigger (the single-threaded one, busy holding a poll) is
charged for it. How far apart the servers stamped the same event is measured too
(`publish_skew_ms`), and so is each lane's lag between the trigger and its server's own
timestamp (`publish_lag_ms`).

This module runs the lanes together; `results()` is a typed `ComparisonResult`. The table, the
figures, the panel and the CLI are the package's other modules. Nothing here prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, replace
from types import TracebackType
from typing import Any

from helpers.compare.fanout import FanOut, SharedTrigger
from helpers.compare.lane import Lane
from helpers.compare.results import ComparisonResult
from helpers.compare.spec import EVERY_LANE, LANES, Preset, Scenario, find_preset, parse_lanes
from helpers.compare.timeline import Timeline
from helpers.launcher import launch_all

BURST_EVENTS = 20


class Comparison:
    """Several lanes (strategies, each on its own server) driven by one trigger.

    `Comparison(lanes=("short", "asyncio"), clients=10)` launches the servers at once; use it as
    a context manager or call `close()`. `start()`/`stop()`/`reset()`/`trigger()`/`burst()` are
    what a panel's buttons call; `run(seconds)` is a whole measurement; `results()` is the
    numbers. Raises ValueError for an unknown lane or a setting out of range, and
    ServerNotReady if a server does not start.
    """

    def __init__(self, lanes: str | Iterable[str] = tuple(LANES),
                 scenario: Scenario | None = None, **changes: Any) -> None:
        self.scenario = replace(scenario or Scenario(), **changes)
        names = parse_lanes(lanes)
        self.lanes: dict[str, Lane] = {}
        self.shared_trigger = SharedTrigger()
        self.timeline = Timeline(self._requests)
        self.settled_s = 0.0  # how long the last run() waited for its last deliveries
        self.running = False
        try:
            # Started side by side from this thread (launch_all): a launched server is tied to
            # the thread that launched it (it dies with it), so a short-lived worker won't do.
            specs = [EVERY_LANE[name] for name in names]
            servers = launch_all([(spec.kind, spec.launch_options(self.scenario))
                                  for spec in specs])
            for spec, server in zip(specs, servers, strict=True):
                self.lanes[spec.name] = Lane(spec, server, self.shared_trigger.record_stamp)
        except BaseException:
            self.close()
            raise

    # --- the actions: a panel's buttons call these, and so do the CLI and the notebook ---

    def trigger(self, message: str | None = None, *, wait: float = 0.0) -> FanOut:
        """Publish one event on every lane's server, from one shared moment.

        With `wait`, return once every lane has published it (or `wait` seconds passed), so
        the returned FanOut holds each server's event and timestamp.
        """
        return self.shared_trigger.fire(self.lanes, message, wait)

    def burst(self, n: int = BURST_EVENTS) -> None:
        """Trigger `n` events at once (the Burst button)."""
        for i in range(n):
            self.trigger(f"burst {i + 1}/{n}")

    def start(self) -> None:
        """Start every lane's clients and the auto-trigger at `scenario.rate`, and measure afresh.

        Every start is a fresh measurement: the numbers of a stopped run stay on screen only
        until then.
        """
        if self.running:
            return
        # Start on clean servers: a Flask server still sleeping in polls from clients that
        # left would make the new clients queue behind them.
        for lane in self.lanes.values():
            if lane.stale_holds:
                lane.restart_server(self.scenario)
        self.running = True
        # Count from here, before any client starts, so that every lane's first polls count.
        self.reset()
        for lane in self.lanes.values():
            lane.start_clients(self.scenario)
        self.shared_trigger.start_auto(lambda: self.scenario.rate, self.trigger)
        self.timeline.start()

    def stop(self) -> None:
        """Stop the auto-trigger and every lane's clients; the measurements stay."""
        if self.running:
            self._end_triggering()
        self.shared_trigger.stop_auto(join=2)
        self.timeline.stop()
        for lane in self.lanes.values():
            lane.drain()
            lane.stop_clients()
        if self.running:
            for lane in self.lanes.values():
                lane.cpu.freeze()
            self.timeline.freeze()
        self.running = False

    def reset(self) -> None:
        """Forget every measurement (running clients keep running)."""
        self.shared_trigger.reset()
        self.settled_s = 0.0
        self.timeline.restart(self.running)
        for lane in self.lanes.values():
            lane.reset()

    def configure(self, **changes: Any) -> None:
        """Change the scenario (`clients`, `rate`, `interval`, `hold`, `check_interval`).

        A new rate applies at once. Any other change restarts the clients and starts a fresh
        measurement, and a new `check_interval` restarts the naive servers (a start option).
        """
        new = replace(self.scenario, **changes)
        old, self.scenario = self.scenario, new
        if replace(new, rate=old.rate) == old:
            return  # only the rate changed: the auto-trigger reads it on its next gap
        running = self.running
        self.stop()
        if new.check_interval != old.check_interval:
            for lane in self.lanes.values():
                if lane.spec.naive:
                    lane.restart_server(new)
        if running:
            self.start()
        else:
            self.reset()

    def apply_preset(self, name: str) -> Preset:
        """Set every knob to a preset's scenario (see PRESETS); returns the preset."""
        preset = find_preset(name)
        self.configure(**asdict(preset.scenario))
        return preset

    def run(self, seconds: float, progress: Callable[[float], None] | None = None,
            **changes: Any) -> ComparisonResult:
        """Measure for `seconds` from a clean slate, let the last events arrive, and stop.

        `changes` adjust the scenario first. `progress(fraction)` is called about ten times a
        second. Returns `results()`.
        """
        self.stop()
        if changes:
            self.configure(**changes)
        self.start()
        began = time.monotonic()
        try:
            while (elapsed := time.monotonic() - began) < seconds:
                if progress:
                    progress(min(elapsed / seconds, 1.0))
                time.sleep(min(0.1, seconds - elapsed))
            self._end_triggering()
            self._settle()
        finally:
            self.stop()
        if progress:
            progress(1.0)
        return self.results()

    def settle_time(self) -> float:
        """How long `run()` waits after the last trigger for deliveries still on their way.

        Long enough for the slowest lane that works as designed: a short poll's interval, or
        a naive check interval, plus a second. Every lane gets that same window. A
        single-threaded server may need a whole hold per queued request; what it has not
        delivered by then shows up in its "delivered %".
        """
        return max(lane.spec.delivery_wait(self.scenario) for lane in self.lanes.values()) + 1.0

    def close(self) -> None:
        """Stop the clients, the publishers and every lane's server."""
        self.stop()
        for lane in self.lanes.values():
            lane.close()
            lane.server.stop()

    def __enter__(self) -> Comparison:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        servers = "; ".join(f"{name}: {lane.server!r}" for name, lane in self.lanes.items())
        return f"<Comparison of {len(self.lanes)} lanes, {self.scenario}: {servers}>"

    # --- what views read ------------------------------------------------------------------

    @property
    def triggered(self) -> int:
        """Fan-outs since the last reset."""
        return self.shared_trigger.triggered

    def recent_kernel_cpu_pct(self) -> float:
        """This process's CPU use over the last few seconds, as % of one core."""
        return self.timeline.recent_kernel_cpu_pct()

    def results(self) -> ComparisonResult:
        """Everything measured since the last reset: one row per lane, and the shared numbers."""
        triggered = self.shared_trigger.triggered
        rows = tuple(lane.result(triggered, self.timeline) for lane in self.lanes.values())
        concurrent = [n for n, lane in self.lanes.items() if lane.spec.threaded is not False]
        return ComparisonResult(
            scenario=self.scenario, lanes=rows, seconds=self.timeline.trigger_seconds(),
            settle_seconds=self.settled_s, total_seconds=self.timeline.elapsed(),
            triggered=triggered, publish_skew_ms=self.shared_trigger.skew(self.lanes, concurrent),
            kernel_cpu_pct=self.timeline.kernel_cpu_pct(), timeline=tuple(self.timeline.points))

    # --- internals ----------------------------------------------------------------------

    def _requests(self) -> dict[str, int]:
        return {name: lane.metrics.requests for name, lane in self.lanes.items()}

    def _end_triggering(self) -> None:
        """Stop publishing; requests per second are counted up to this moment."""
        self.shared_trigger.stop_auto()
        self.timeline.end_triggering()

    def _settle(self) -> None:
        """Wait up to `settle_time()` for every lane to deliver every event to every client."""
        settle_from = time.monotonic()
        triggered = self.shared_trigger.triggered
        while (time.monotonic() < settle_from + self.settle_time()
               and not all(lane.caught_up(triggered) for lane in self.lanes.values())):
            time.sleep(0.05)
        self.settled_s = time.monotonic() - settle_from
