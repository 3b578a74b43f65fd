"""How a lane runs: its server, a `Swarm` of clients, a publisher, a /stats sampler, and the
matching of every delivery to the fan-out moment it came from.

The publisher posts each fan-out over a connection it keeps open (`helpers.http.KeptConnection`,
which also turns failures into the kit's exceptions), so that a trigger reaches every lane's
server within a few milliseconds of the others (the publish skew): opening a connection per
trigger would add its own, uneven, delay. A publish that got no answer is retried with one
`Idempotency-Key` (`helpers.http.publish_with_retries`), so it publishes once.
"""

from __future__ import annotations

import functools
import json
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from helpers.compare.fanout import Job
from helpers.compare.results import LaneResult, LatencySpread, Spread, TailSpread
from helpers.compare.spec import LaneSpec, Scenario
from helpers.compare.timeline import TICK_S, Timeline
from helpers.http import Answer, KeptConnection, publish_with_retries
from helpers.launcher import Server
from helpers.metrics import Delivery, Metrics
from helpers.processes import cpu_seconds
from helpers.swarm import Swarm

PUBLISH_TIMEOUT_S = 120.0  # a single-threaded server may take a whole hold to accept a trigger
PEAK_KEYS = ("threads", "rss_bytes", "waiting")  # from /stats, kept as the highest seen


class CpuMeter:
    """A process's CPU use over a stretch of time, as % of one core (user + system)."""

    def __init__(self, cpu_seconds: Callable[[], float]) -> None:
        self._cpu_seconds = cpu_seconds
        self.mark()

    def _read(self) -> float:
        try:
            return self._cpu_seconds()
        except (OSError, AssertionError, ValueError):  # not running, or not Linux
            return float("nan")

    def mark(self) -> None:
        """Start counting from now."""
        self._span: tuple[float, float, tuple[float, float] | None] = (
            time.monotonic(), self._read(), None)

    def freeze(self) -> None:
        """Stop counting (the measurement ended)."""
        since, used, _ = self._span
        self._span = (since, used, (time.monotonic(), self._read()))

    def pct(self) -> float:
        """CPU use since `mark()` (until `freeze()`), as % of one core."""
        since, used, frozen = self._span
        now, total = frozen or (time.monotonic(), self._read())
        return 100 * (total - used) / (now - since) if now > since else float("nan")


class Lane:
    """One strategy against its own server: the clients, the publisher and the measurements."""

    def __init__(self, spec: LaneSpec, server: Server,
                 on_publish: Callable[[str, Job, dict[str, Any]], None]) -> None:
        self.spec = spec
        self.server = server
        self._on_publish = on_publish  # tells the shared trigger this server's stamp
        self.metrics = Metrics()
        self.swarm: Swarm | None = None
        self.clients = 0
        self.stale_holds = False  # a Flask server still sleeping in polls whose clients left
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._closed = threading.Event()
        self.last_id = 0  # the newest id this lane's server gave one of our triggers
        self.generation = 0  # bumped by each server restart
        self.last_stats: dict[str, Any] = {}
        self.stats_at = 0.0  # monotonic time of the last /stats answer
        self.cpu = CpuMeter(lambda: cpu_seconds(self.server.pid))
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
        self.peaks: dict[str, int] = {}  # the highest threads, rss_bytes, waiting measured
        self._seen: list[Delivery] | None = None
        self._cursor = 0
        self._unmatched: list[Delivery] = []

    # --- publishing ---------------------------------------------------------------------

    def submit(self, job: Job) -> None:
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
        connection = KeptConnection(lambda: self.server.url, PUBLISH_TIMEOUT_S)
        while (job := self._jobs.get()) is not None:
            body = json.dumps({"message": job.message}).encode()  # encoded before it is sent
            try:
                # The connection sends a request again when a kept-alive connection turns out
                # closed, and a server that restarts refuses a try: the one Idempotency-Key
                # of this publish makes every repeat of it answer the same event.
                answer = publish_with_retries(functools.partial(
                    self._publish_once, connection, body))
                if answer.status != 201:
                    raise RuntimeError(f"HTTP {answer.status}: {answer.body[:200]!r}")
                event = answer.json()["event"]
            except Exception as exc:  # noqa: BLE001 - counted and shown in the lane's row
                with self._lock:
                    if job.epoch == self.epoch:
                        self.publish_errors += 1
                        self.last_publish_error = f"{type(exc).__name__}: {exc}"
                continue
            self._record_publish(job, event)
        connection.close()

    @staticmethod
    def _publish_once(connection: KeptConnection, body: bytes,
                      headers: dict[str, str]) -> Answer:
        return connection.request("POST", "/trigger_event", body=body, headers=headers)

    def _record_publish(self, job: Job, event: dict[str, Any]) -> None:
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
        connection = KeptConnection(lambda: self.server.url, PUBLISH_TIMEOUT_S)
        while not self._closed.wait(TICK_S):
            # One /stats request at a time: a single-threaded server answers it only between
            # polls, and a pile of abandoned requests would slow it down further.
            try:
                answer = connection.request("GET", "/stats")
            except Exception:  # noqa: BLE001 - a restarting server; the row shows the age
                continue
            if answer.status == 200:
                stats = answer.json()
                with self._lock:
                    self.last_stats, self.stats_at = stats, time.monotonic()
                    if self.swarm is not None:  # stale holds after a stop don't count
                        for key in PEAK_KEYS:
                            self.peaks[key] = max(self.peaks.get(key, 0), int(stats[key]))
        connection.close()

    # --- clients ------------------------------------------------------------------------

    def start_clients(self, scenario: Scenario) -> None:
        self.clients = scenario.clients
        swarm = Swarm(self.server.url, scenario.clients, self.spec.strategy,
                      interval=scenario.interval, hold=scenario.hold, metrics=self.metrics,
                      last_event_id=self.last_id, name=self.spec.name).start()
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
        self.cpu.mark()

    def reset(self) -> None:
        """Forget the measurements; fan-outs still in flight will not count."""
        with self._lock:
            self._reset_state(self.epoch + 1)
            swarm = self.swarm
        self.metrics.reset()
        if swarm is not None:  # keep checking running clients for holes from their cursor on
            for cursor in swarm.cursors:
                self.metrics.start_client(cursor.name, cursor.last_event_id)
        self.cpu.mark()

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

    def caught_up(self, triggered: int) -> bool:
        """True once every client has received every one of `triggered` fan-outs."""
        with self._lock:
            self._harvest()
            return len(self.latencies) >= triggered * max(self.clients, 1)

    def result(self, triggered: int, timeline: Timeline) -> LaneResult:
        """This lane's row since the last reset: `triggered` fan-outs, measured on `timeline`."""
        with self._lock:
            self._harvest()
            points = list(self.latencies)
            published, dropped, errors = self.published, self.dropped, self.publish_errors
            last_publish_error, lags = self.last_publish_error, list(self.lags_ms)
            stats, peaks = dict(self.last_stats), dict(self.peaks)
            stats_age = (time.monotonic() - self.stats_at) if self.stats_at else None
        m = self.metrics.summary()
        expected = triggered * max(self.clients, 1)
        e2e = [p[1] for p in points]
        return LaneResult(
            lane=self.spec.name, title=self.spec.title, server=self.server.kind,
            strategy=self.spec.strategy, threaded=self.spec.threaded, clients=self.clients,
            triggered=triggered, requests=m["requests"],
            requests_per_s=timeline.requests_per_s(self.spec.name, m["requests"]),
            deliveries=len(points), expected_deliveries=expected,
            requests_per_event=m["requests"] / len(points) if points else float("inf"),
            empty_pct=m["empty_pct"],
            delivered_pct=100 * len(points) / expected if expected else float("nan"),
            latency_ms=LatencySpread.of(e2e), latency_own_ms=TailSpread.of(p[2] for p in points),
            published=published, dropped=dropped, publish_errors=errors,
            last_publish_error=last_publish_error, publish_lag_ms=Spread.of(lags),
            stats_age_s=stats_age, server_threads=stats.get("threads"),
            server_rss_bytes=stats.get("rss_bytes"), server_waiting=stats.get("waiting"),
            server_threads_max=peaks.get("threads"),
            server_rss_bytes_max=peaks.get("rss_bytes"),
            server_waiting_max=peaks.get("waiting"), server_cpu_pct=self.cpu.pct(),
            missing=m["missing"], duplicates=m["duplicates"],
            gaps_reported=m["gaps_reported"], stream_resets=m["stream_resets"],
            errors=m["errors"], last_error=m["last_error"],
            latency_points=tuple((t - timeline.started_at, ms) for t, ms, _ in points),
        )

    def close(self) -> None:
        self.stop_clients()
        self._closed.set()
        self._jobs.put(None)
