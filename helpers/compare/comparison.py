"""Every strategy side by side: one lane per strategy, each with its own server and clients.

    with Comparison() as lab:                  # four servers, one per lane
        lab.configure(clients=20, rate=0.2)
        results = lab.run(seconds=30)

A lane is a server, a `Swarm` of clients of one strategy, and a publisher. One trigger is a
*fan-out*: its moment is read once, on this process's clock, and handed to every lane's
publisher, and each publisher posts it to its own server over a connection it keeps open. Each
lane is a separate server on purpose (a shared event source would add a relay, whose own delay
would be measured instead of the strategy's), so latency is measured from that one shared
moment: every lane is timed against the same instant, and a server that is slow even to *accept*
the trigger (the single-threaded one, busy holding a poll) is charged for it. How far apart the
servers stamped the same event is measured too (`publish_skew`), and so is each lane's lag
between the trigger and its server's own timestamp (`publish_lag_ms`).

This module is the engine: `helpers.compare` prints and plots it (`python -m helpers.compare`),
and `helpers.compare_panel` is its live widget view. Nothing here prints.
"""

from __future__ import annotations

import http.client
import json
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from helpers.experiment import auto_trigger
from helpers.launcher import Server, launch
from helpers.metrics import Delivery, Metrics, percentile
from helpers.swarm import Strategy, Swarm

TICK_S = 0.5  # how often the timeline and the server stats are sampled
PUBLISH_TIMEOUT_S = 120.0  # a single-threaded server may take a whole hold to accept a trigger
BURST_EVENTS = 20
RATE_WINDOW_S = 2.0  # the timeline's requests/s and CPU % are averaged over this window
PEAK_KEYS = ("threads", "rss_bytes", "waiting")  # from /stats, kept as the highest seen


@dataclass(frozen=True)
class LaneSpec:
    """What a lane runs: a server kind and its start options, and the clients' strategy."""

    name: str
    title: str
    kind: str
    strategy: Strategy
    color: str
    linestyle: str  # lanes with equal numbers draw on top of each other: dashes keep both visible
    threaded: bool | None = None  # the Flask server's threading; None for FastAPI

    @property
    def naive(self) -> bool:
        """True for the Flask sleep-loop long poll, whose check interval is a start option."""
        return self.kind == "naive"

    def launch_options(self, scenario: Scenario) -> dict[str, Any]:
        options: dict[str, Any] = {"hold": scenario.hold}
        if self.threaded is not None:
            options["threaded"] = self.threaded
        if self.naive:
            options["check_interval"] = scenario.check_interval
        return options


#: The lanes, in the order every table and plot shows them.
LANES: dict[str, LaneSpec] = {spec.name: spec for spec in (
    LaneSpec("short", "short polling (Flask /events)", "short", "short", "tab:orange", "-",
             threaded=True),
    LaneSpec("naive", "naive long poll, threaded Flask", "naive", "long", "tab:purple", "-",
             threaded=True),
    LaneSpec("naive-single", "naive long poll, single-threaded Flask", "naive", "long",
             "tab:red", "-.", threaded=False),
    LaneSpec("asyncio", "asyncio long poll (FastAPI)", "asyncio", "long", "tab:green", "--"),
)}


@dataclass(frozen=True)
class Scenario:
    """The knobs, the same for every lane. Each lane uses the ones its strategy has."""

    clients: int = 3  # simulated clients per lane
    rate: float = 1.0  # fan-outs per second from the auto-trigger (0: manual triggers only)
    interval: float = 1.0  # short polling: seconds between one client's requests
    hold: float = 10.0  # long polling: how long a server may hold a request, seconds
    check_interval: float = 1.0  # the naive server's sleep between checks (a start option)

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.clients <= 1000:
            problems.append(f"clients must be from 1 to 1000 per lane, not {self.clients}")
        if not 0 <= self.rate <= 50:
            problems.append(f"rate must be from 0 to 50 events per second, not {self.rate}")
        if not 0.05 <= self.interval <= 60:
            problems.append(f"interval must be from 0.05 to 60 seconds, not {self.interval}")
        if not 0 < self.hold <= 300:
            problems.append(f"hold must be more than 0 and at most 300 seconds, not {self.hold}")
        if not 0.01 <= self.check_interval <= 10:
            problems.append(f"check_interval must be from 0.01 to 10 seconds, not "
                            f"{self.check_interval}")
        if problems:
            raise ValueError("; ".join(problems) + ".")


@dataclass(frozen=True)
class Preset:
    """A scenario from the article's use cases, and what to look for when it runs."""

    name: str
    scenario: Scenario
    description: str


PRESETS: dict[str, Preset] = {preset.name: preset for preset in (
    Preset("sparse notifications",
           Scenario(clients=20, rate=0.1, interval=1.0, hold=30.0, check_interval=1.0),
           "A notification every ten seconds or so, and twenty users waiting for it. Short "
           "polling asks every second, so look at its requests per event (about ten) and its "
           "empty responses (around 90 %): that is the waste long polling removes, since the "
           "long-poll lanes need about one request per event. Then compare latency. Short "
           "polling pays about half its interval, and so does the naive long poll with the "
           "article's 1 s check: it saves requests but is no faster. The asyncio lane takes a "
           "few milliseconds. The single-threaded lane can hold only one request at a time, so "
           "even the trigger waits behind a 30 s hold, and few notifications, if any, get "
           "through."),
    Preset("chat burst",
           Scenario(clients=20, rate=5.0, interval=1.0, hold=30.0, check_interval=0.5),
           "A busy chat room: five messages a second, and the Burst button posts twenty at "
           "once. Now the picture turns around. The asyncio lane answers every message on its "
           "own, so it makes about one request per message per user and the most requests per "
           "second, while short polling and the naive loop collect several messages per answer "
           "and need fewer than one request per message. Look at the latency columns to see "
           "what that batching costs, and at the load generator's CPU: when this kernel nears "
           "100 % of a core, the clients themselves are the bottleneck."),
    Preset("1000 idle dashboards",
           Scenario(clients=1000, rate=0.05, interval=5.0, hold=30.0, check_interval=1.0),
           "A thousand monitoring dashboards left open, with a status change every twenty "
           "seconds or so. Look at the server columns. The asyncio server holds a thousand "
           "requests with a handful of threads and little extra memory; the threaded Flask "
           "server holds them with one thread each; short polling holds nothing but answers "
           "about 200 requests a second, almost all of them empty; the single-threaded server "
           "holds one and leaves the rest waiting in line, so they time out. Four thousand "
           "clients are a real load for one kernel too: check the load generator's CPU before "
           "blaming a server."),
)}


def find_preset(name: str) -> Preset:
    """The preset called `name`; case, dashes and underscores are ignored ("chat-burst")."""
    wanted = " ".join(name.lower().replace("-", " ").replace("_", " ").split())
    for preset in PRESETS.values():
        if preset.name == wanted:
            return preset
    raise ValueError(f"Unknown preset {name!r}; choose one of: "
                     + ", ".join(repr(p) for p in PRESETS) + ".")


def parse_lanes(lanes: str | Iterable[str]) -> list[str]:
    """Lane names from "short,asyncio" or a list, in the standard order; raise if unknown."""
    names = [n.strip() for n in (lanes.split(",") if isinstance(lanes, str) else lanes)]
    unknown = [n for n in names if n not in LANES]
    if unknown or not names:
        raise ValueError(f"Unknown lane(s) {', '.join(unknown) or '(none given)'}; choose from "
                         f"{', '.join(LANES)}, separated by commas.")
    return [n for n in LANES if n in names]


def _stats(values: list[float], *quantiles: int) -> dict[str, float]:
    ordered = sorted(values)
    out = {f"p{q}": percentile(ordered, q) for q in quantiles}
    out["max"] = ordered[-1] if ordered else float("nan")
    return out


@dataclass
class _Job:
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


class _Connection:
    """One kept-open HTTP connection to a lane's server, for one thread at a time."""

    def __init__(self, server: Server, timeout: float) -> None:
        self.server = server
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._address: tuple[str, int] | None = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        url = urlsplit(self.server.url)  # read each time: a restart may change the port
        address = (url.hostname or "127.0.0.1", url.port or 80)
        if self._conn is None or address != self._address:
            self.close()
            self._conn = http.client.HTTPConnection(*address, timeout=self.timeout)
            self._address = address
            fresh = True
        else:
            fresh = False
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            self._conn.request(method, path, body=body, headers=headers)
            response = self._conn.getresponse()
            return response.status, response.read()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            self.close()
            if fresh:
                raise
            # uvicorn closes a keep-alive connection after 5 idle seconds; the request never
            # reached the app, so sending it again on a new connection publishes it once.
            return self.request(method, path, body)
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Lane:
    """One strategy against its own server: the clients, the publisher and the measurements."""

    def __init__(self, spec: LaneSpec, server: Server,
                 on_publish: Callable[[str, _Job, dict[str, Any]], None]) -> None:
        self.spec = spec
        self.server = server
        self._on_publish = on_publish  # tells the Comparison this server's stamp
        self.metrics = Metrics()
        self.swarm: Swarm | None = None
        self.clients = 0
        self.stale_holds = False  # a Flask server still sleeping in polls whose clients left
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = threading.Event()
        self.last_id = 0  # the newest id this lane's server gave one of our triggers
        self.generation = 0  # bumped by each server restart
        self.last_stats: dict[str, Any] = {}
        self.stats_at = 0.0  # monotonic time of the last /stats answer
        self.peaks: dict[str, int] = {}  # the highest threads, rss_bytes, waiting while measuring
        self.mark_cpu()
        self._reset_state(epoch=0)
        self._publisher = threading.Thread(target=self._publish_loop, daemon=True,
                                           name=f"publish-{spec.name}")
        self._sampler = threading.Thread(target=self._sample_loop, daemon=True,
                                         name=f"stats-{spec.name}")
        self._publisher.start()
        self._sampler.start()

    def _reset_state(self, epoch: int) -> None:
        self.epoch = epoch
        self.sent: dict[int, float] = {}  # event id -> fan-out moment, this epoch
        self.lags_ms: list[float] = []  # server timestamp − fan-out moment
        self.published = 0
        self.dropped = 0  # fan-outs this lane never published (stopped while queued)
        self.publish_errors = 0
        self.last_publish_error: str | None = None
        self.latencies: list[tuple[float, float, float]] = []  # (received, e2e ms, own ms)
        self.peaks = {}
        self._seen: list[Delivery] | None = None
        self._cursor = 0
        self._unmatched: list[Delivery] = []

    # --- publishing ---------------------------------------------------------------------

    def submit(self, job: _Job) -> None:
        self._jobs.put(job)

    def drain(self) -> int:
        """Forget the fan-outs still waiting to be published; return how many there were."""
        dropped = 0
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._jobs.put(None)
                break
            dropped += 1
        with self._lock:
            self.dropped += dropped
        return dropped

    def _publish_loop(self) -> None:
        connection = _Connection(self.server, PUBLISH_TIMEOUT_S)
        while (job := self._jobs.get()) is not None:
            body = json.dumps({"message": job.message}).encode()
            try:
                status, data = connection.request("POST", "/trigger_event", body)
                if status != 201:
                    raise RuntimeError(f"HTTP {status}: {data[:200]!r}")
                event = json.loads(data)["event"]
            except Exception as exc:  # noqa: BLE001 - counted and shown in the lane's row
                with self._lock:
                    if job.epoch == self.epoch:
                        self.publish_errors += 1
                        self.last_publish_error = f"{type(exc).__name__}: {exc}"
                continue
            self._record_publish(job, event)
        connection.close()

    def _record_publish(self, job: _Job, event: dict[str, Any]) -> None:
        with self._lock:
            if job.generation == self.generation:  # ids from a stopped server mean nothing now
                self.last_id = max(self.last_id, int(event["id"]))
            if job.epoch != self.epoch:
                return  # triggered before a reset or restart: not part of this measurement
            self.sent[int(event["id"])] = job.at
            self.lags_ms.append((float(event["timestamp"]) - job.at) * 1000)
            self.published += 1
        self._on_publish(self.spec.name, job, event)

    # --- server stats -------------------------------------------------------------------

    def _sample_loop(self) -> None:
        connection = _Connection(self.server, PUBLISH_TIMEOUT_S)
        while not self._closed.wait(TICK_S):
            # One /stats request at a time: a single-threaded server answers it only between
            # polls, and a pile of abandoned requests would slow it down further.
            try:
                status, data = connection.request("GET", "/stats")
            except Exception:  # noqa: BLE001 - a restarting server; the row shows the age
                continue
            if status == 200:
                stats = json.loads(data)
                with self._lock:
                    self.last_stats, self.stats_at = stats, time.monotonic()
                    if self.swarm is not None:  # stale holds after a stop don't count
                        for key in PEAK_KEYS:
                            self.peaks[key] = max(self.peaks.get(key, 0), int(stats[key]))
        connection.close()

    def _cpu_seconds(self) -> float:
        try:
            return self.server.cpu_seconds()
        except (OSError, AssertionError, ValueError):  # not running, or not Linux
            return float("nan")

    def mark_cpu(self) -> None:
        """Start counting the server's CPU time from now."""
        self._cpu: tuple[float, float, tuple[float, float] | None] = (
            time.monotonic(), self._cpu_seconds(), None)

    def freeze_cpu(self) -> None:
        """Stop counting the server's CPU time (the measurement ended)."""
        since, used, _ = self._cpu
        self._cpu = (since, used, (time.monotonic(), self._cpu_seconds()))

    def cpu_pct(self) -> float:
        """The server's CPU use since `mark_cpu()`, as % of one core (user + system)."""
        since, used, frozen = self._cpu
        now, total = frozen or (time.monotonic(), self._cpu_seconds())
        return 100 * (total - used) / (now - since) if now > since else float("nan")

    # --- clients ------------------------------------------------------------------------

    def start_clients(self, scenario: Scenario) -> None:
        self.clients = scenario.clients
        swarm = Swarm(self.server.url, scenario.clients, self.spec.strategy,
                           interval=scenario.interval, hold=scenario.hold,
                           metrics=self.metrics, last_event_id=self.last_id,
                           name=self.spec.name).start()
        with self._lock:
            self.swarm = swarm

    def stop_clients(self) -> None:
        with self._lock:
            swarm, self.swarm = self.swarm, None
        if swarm is not None:
            swarm.stop()
            # A sleeping Flask handler cannot tell that its client has gone, so it keeps
            # "holding" that poll until the hold runs out (all of them in turn, one at a time,
            # on the single-threaded server).
            if self.spec.naive:
                self.stale_holds = True

    def restart_server(self, scenario: Scenario) -> None:
        """Start this lane's server afresh (new stream, ids from 1) with the scenario's options."""
        self.server.restart(**self.spec.launch_options(scenario))
        with self._lock:
            self.generation += 1
            self.last_id = 0
            self.stale_holds = False
            self.last_stats, self.stats_at = {}, 0.0
            self._reset_state(self.epoch + 1)
        self.metrics.reset()
        self.mark_cpu()

    def reset(self) -> None:
        """Forget the measurements; fan-outs still in flight will not count."""
        with self._lock:
            self._reset_state(self.epoch + 1)
            swarm = self.swarm
        self.metrics.reset()
        if swarm is not None:  # keep checking running clients for holes from their cursor on
            for cursor in swarm.cursors:
                self.metrics.start_client(cursor.name, cursor.last_event_id)
        self.mark_cpu()

    # --- measurements -------------------------------------------------------------------

    def _harvest(self) -> None:
        """Match new deliveries to their fan-out moment (under self._lock)."""
        deliveries = self.metrics.deliveries
        if deliveries is not self._seen:  # the Metrics were reset
            self._seen, self._cursor = deliveries, 0
        new = deliveries[self._cursor:]
        self._cursor += len(new)
        waiting: list[Delivery] = []
        for delivery in self._unmatched + new:
            at = self.sent.get(delivery.event_id)
            if at is not None:
                self.latencies.append((delivery.received_at,
                                       (delivery.received_at - at) * 1000,
                                       delivery.latency_s * 1000))
            elif delivery.event_id > self.last_id:
                waiting.append(delivery)  # a client was quicker than our publisher's answer
            # else: an event triggered before a reset; it is not part of this measurement
        self._unmatched = waiting

    def measurements(self) -> tuple[list[tuple[float, float, float]], dict[str, Any]]:
        """(latency points, counters) for this epoch; see `Comparison.rows`."""
        with self._lock:
            self._harvest()
            counters = {
                "published": self.published, "dropped": self.dropped,
                "publish_errors": self.publish_errors,
                "last_publish_error": self.last_publish_error,
                "publish_lag_ms": _stats(self.lags_ms, 50, 95),
                "stats": dict(self.last_stats), "peaks": dict(self.peaks),
                "stats_age_s": (time.monotonic() - self.stats_at) if self.stats_at else None,
            }
            return list(self.latencies), counters

    def close(self) -> None:
        self.stop_clients()
        self._closed.set()
        self._jobs.put(None)


class Comparison:
    """Several lanes (strategies, each on its own server) driven by one trigger.

    `Comparison(lanes=("short", "asyncio"), clients=10)` launches the servers at once; use it as
    a context manager or call `close()`. `start()`/`stop()`/`reset()`/`trigger()`/`burst()` are
    what a panel's buttons call; `run(seconds)` is a whole measurement; `rows()` and `results()`
    are the numbers. Raises ValueError for an unknown lane or a setting out of range, and
    ServerNotReady if a server does not start.
    """

    def __init__(self, lanes: str | Iterable[str] = tuple(LANES),
                 scenario: Scenario | None = None, **changes: Any) -> None:
        self.scenario = replace(scenario or Scenario(), **changes)
        names = parse_lanes(lanes)
        self.lanes: dict[str, Lane] = {}
        self.fanouts: dict[int, FanOut] = {}
        self.triggered = 0
        self._seq = 0
        self._lock = threading.Lock()
        self._stop_trigger = threading.Event()
        self._trigger_thread: threading.Thread | None = None
        self._ticker: threading.Thread | None = None
        self._stop_ticker = threading.Event()
        self.timeline: list[dict[str, Any]] = []
        self.settled_s = 0.0  # how long the last run() waited for its last deliveries
        self._phase_end: float | None = time.time()  # when triggering stopped
        self._phase_requests: dict[str, int] = {}  # each lane's requests at that moment
        self._mark_start()
        self.stopped_at: float | None = time.time()
        self.running = False
        try:
            for name in names:
                # One after another, from this thread: a launched server is tied to the thread
                # that launched it (it dies with it), so a short-lived worker thread won't do.
                spec = LANES[name]
                server = launch(spec.kind, **spec.launch_options(self.scenario))
                self.lanes[name] = Lane(spec, server, self._record_stamp)
        except BaseException:
            self.close()
            raise

    # --- the actions: a panel's buttons call these, and so do the CLI and the notebook ---

    def trigger(self, message: str | None = None, *, wait: float = 0.0) -> FanOut:
        """Publish one event on every lane's server, from one shared moment.

        With `wait`, return once every lane has published it (or `wait` seconds passed), so
        the returned FanOut holds each server's event and timestamp.
        """
        with self._lock:
            self._seq += 1
            self.triggered += 1
            seq = self._seq
            fanout = self.fanouts[seq] = FanOut(seq, time.time())
        text = message or f"event #{seq}"
        for lane in self.lanes.values():
            lane.submit(_Job(seq, fanout.at, text, lane.epoch, lane.generation))
        deadline = time.monotonic() + wait
        while len(fanout.stamps) < len(self.lanes) and time.monotonic() < deadline:
            time.sleep(0.005)
        return fanout

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
        self._stop_trigger.clear()
        self._stop_ticker.clear()
        self._trigger_thread = threading.Thread(
            target=auto_trigger, args=(self._stop_trigger, lambda: self.scenario.rate,
                                       self.trigger),
            daemon=True, name="compare-trigger")
        self._ticker = threading.Thread(target=self._tick_loop, daemon=True,
                                        name="compare-ticker")
        self._trigger_thread.start()
        self._ticker.start()

    def stop(self) -> None:
        """Stop the auto-trigger and every lane's clients; the measurements stay."""
        if self.running:
            self._end_trigger_phase()
        self._stop_trigger.set()
        self._stop_ticker.set()
        for thread in (self._trigger_thread, self._ticker):
            if thread is not None:
                thread.join(2)
        for lane in self.lanes.values():
            lane.drain()
            lane.stop_clients()
        if self.running:
            for lane in self.lanes.values():
                lane.freeze_cpu()
            self._sample()
            self.stopped_at = time.time()
        self.running = False

    def reset(self) -> None:
        """Forget every measurement (running clients keep running)."""
        with self._lock:
            self.triggered = 0
            self.fanouts = {}
            self.timeline = []
            self.settled_s = 0.0
            self._mark_start()
            self.stopped_at = None if self.running else time.time()
            self._phase_end = self.stopped_at
            self._phase_requests = {name: 0 for name in self.lanes}
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
            **changes: Any) -> dict[str, Any]:
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
            self._end_trigger_phase()
            settle_from = time.monotonic()
            while (time.monotonic() < settle_from + self.settle_time()
                   and not self._all_delivered()):
                time.sleep(0.05)
            self.settled_s = time.monotonic() - settle_from
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
        s = self.scenario
        waits = {"short": s.interval, "naive": s.check_interval, "asyncio": 0.0}
        return max(waits[lane.spec.kind] for lane in self.lanes.values()) + 1.0

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

    def trigger_seconds(self) -> float:
        """Seconds from the last reset until triggering stopped (or until now)."""
        end = self._phase_end if self._phase_end is not None else time.time()
        return max(end - self.started_at, 1e-9)

    def elapsed(self) -> float:
        """Seconds measured since the last reset (up to the stop, once stopped)."""
        end = self.stopped_at if self.stopped_at is not None else time.time()
        return max(end - self.started_at, 1e-9)

    def kernel_cpu_pct(self) -> float:
        """This process's CPU use since the last reset, as % of one core (the load generator)."""
        now = self._cpu_stopped if self.stopped_at is not None else time.process_time()
        return 100 * (now - self._cpu_at_start) / self.elapsed()

    def recent_kernel_cpu_pct(self) -> float:
        """This process's CPU use over the last RATE_WINDOW_S seconds, as % of one core."""
        return float(self.timeline[-1]["kernel_cpu_pct"]) if self.timeline else float("nan")

    def publish_skew(self) -> dict[str, Any]:
        """How far apart the servers stamped the same event: max − min, per fan-out, in ms.

        `all` covers every lane; `concurrent` leaves out single-threaded lanes, whose stamps
        are late whenever their one thread is busy holding a poll (see their publish lag).
        """
        concurrent = {n for n, lane in self.lanes.items() if lane.spec.threaded is not False}
        with self._lock:
            fanouts = list(self.fanouts.values())
        out: dict[str, Any] = {"fanouts": len(fanouts)}
        for label, names in (("all", set(self.lanes)), ("concurrent", concurrent)):
            skews = [(max(v) - min(v)) * 1000 for f in fanouts
                     if len(v := [t for n, t in f.stamps.items() if n in names]) == len(names)
                     and len(names) >= 2]
            out[label] = {"lanes": [n for n in self.lanes if n in names], "events": len(skews),
                          **_stats(skews, 50, 95)}
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One dict per lane: the table's numbers, measured since the last reset."""
        with self._lock:
            triggered = self.triggered
        seconds = self.trigger_seconds()
        ended = self._phase_end is not None
        rows = []
        for name, lane in self.lanes.items():
            points, counters = lane.measurements()
            m = lane.metrics.summary()
            stats, peaks = counters.pop("stats"), counters.pop("peaks")
            expected = triggered * max(lane.clients, 1)
            e2e = [p[1] for p in points]
            own = [p[2] for p in points]
            rows.append({
                "lane": name, "title": lane.spec.title, "server": lane.server.kind,
                "strategy": lane.spec.strategy, "threaded": lane.spec.threaded,
                "clients": lane.clients, "triggered": triggered,
                "requests": m["requests"],
                # per second while events were triggered: the settling time after the last
                # one would dilute it
                "requests_per_s": (self._phase_requests.get(name, 0) if ended
                                   else m["requests"]) / seconds,
                "deliveries": len(points), "expected_deliveries": expected,
                "requests_per_event": m["requests"] / len(points) if points else float("inf"),
                "empty_pct": m["empty_pct"],
                "delivered_pct": 100 * len(points) / expected if expected else float("nan"),
                "latency_ms": {**_stats(e2e, 50, 95, 99),
                               "mean": sum(e2e) / len(e2e) if e2e else float("nan")},
                "latency_own_ms": _stats(own, 50, 95, 99),
                **counters,
                "server_threads": stats.get("threads"),
                "server_rss_bytes": stats.get("rss_bytes"),
                "server_waiting": stats.get("waiting"),
                "server_threads_max": peaks.get("threads"),
                "server_rss_bytes_max": peaks.get("rss_bytes"),
                "server_waiting_max": peaks.get("waiting"),
                "server_cpu_pct": lane.cpu_pct(),
                "missing": m["missing"], "duplicates": m["duplicates"],
                "gaps_reported": m["gaps_reported"], "stream_resets": m["stream_resets"],
                "errors": m["errors"], "last_error": m["last_error"],
                "lost": m["missing"] + m["duplicates"] + m["gaps_reported"],
            })
        return rows

    def latency_points(self) -> dict[str, list[tuple[float, float]]]:
        """Per lane: (seconds since the last reset, latency from the trigger in ms)."""
        return {name: [(t - self.started_at, ms) for t, ms, _ in lane.measurements()[0]]
                for name, lane in self.lanes.items()}

    def results(self) -> dict[str, Any]:
        """Everything measured since the last reset, JSON-ready (nan and inf become null)."""
        rows = self.rows()
        results: dict[str, Any] = _jsonable({
            "scenario": asdict(self.scenario),
            "lanes": rows,
            "seconds": self.trigger_seconds(),
            "settle_seconds": self.settled_s,
            "total_seconds": self.elapsed(),
            "triggered": self.triggered,
            "publish_skew_ms": self.publish_skew(),
            "kernel_cpu_pct": self.kernel_cpu_pct(),
            "kernel_cpu_peak_pct": max((p["kernel_cpu_pct"] for p in self.timeline),
                                       default=float("nan")),
            "timeline": list(self.timeline),
            "lost": {row["lane"]: row["lost"] for row in rows if row["lost"]},
        })
        return results

    # --- internals ----------------------------------------------------------------------

    def _end_trigger_phase(self) -> None:
        """Stop publishing; requests per second are counted up to this moment."""
        self._stop_trigger.set()
        if self._phase_end is None:
            self._phase_requests = {n: lane.metrics.requests for n, lane in self.lanes.items()}
            self._phase_end = time.time()

    def _mark_start(self) -> None:
        self.started_at = time.time()
        self._cpu_at_start = self._cpu_stopped = time.process_time()
        # (monotonic time, CPU seconds, requests per lane) of recent samples; Metrics restart at 0
        self._samples: list[tuple[float, float, dict[str, int]]] = [
            (time.monotonic(), self._cpu_at_start, {})]

    def _record_stamp(self, lane: str, job: _Job, event: dict[str, Any]) -> None:
        with self._lock:
            fanout = self.fanouts.get(job.seq)
            if fanout is not None and fanout.at == job.at:
                fanout.stamps[lane] = float(event["timestamp"])
                fanout.events[lane] = event

    def _all_delivered(self) -> bool:
        rows = self.rows()
        return all(r["deliveries"] >= r["expected_deliveries"] for r in rows)

    def _tick_loop(self) -> None:
        while not self._stop_ticker.wait(TICK_S):
            self._sample()

    def _sample(self) -> None:
        """Append one timeline point: requests per second per lane, and this process's CPU.

        Both are averaged over the last RATE_WINDOW_S seconds, so that a few clients polling
        once a second draw a readable line rather than a comb.
        """
        now, cpu = time.monotonic(), time.process_time()
        current = {name: lane.metrics.requests for name, lane in self.lanes.items()}
        self._samples.append((now, cpu, current))
        while len(self._samples) > 2 and self._samples[1][0] <= now - RATE_WINDOW_S:
            self._samples.pop(0)
        then, cpu_then, counts = self._samples[0]
        dt = max(now - then, 1e-9)
        self.timeline.append({
            "t": round(time.time() - self.started_at, 3),
            "requests": current,
            "requests_per_s": {n: max(0, c - counts.get(n, 0)) / dt
                               for n, c in current.items()},
            "kernel_cpu_pct": 100 * (cpu - cpu_then) / dt,
        })
        self._cpu_stopped = cpu


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return None if value != value or value in (float("inf"), float("-inf")) else value
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
