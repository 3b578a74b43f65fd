"""Many simulated clients in a process of their own: one event loop, not a thread per client.

    with Swarm(server.url, 1000, "long", hold=30) as swarm:
        server.trigger()
    swarm.metrics.summary()

Every swarm's clients run in one process beside the kernel (`helpers.swarm_worker`, started
with the first swarm and stopped with the kernel), on an event loop of their own (uvloop where
it is installed). Reading 1,000 answers then does not compete with the kernel, its widgets and
its timers for one core. What the clients record arrives here within `swarm_worker.FLUSH_S` and
is replayed on this process's `Metrics`, so a swarm reads as if its clients were local:
`metrics`, `cursors`, `attempts`, `errors` and `kills` are kept up to date. Receive times are
still the client's own, taken the moment an answer was read.

`Swarm(..., process=False)` runs the same clients on a thread of this process instead, as the
kit did before; notebook 03 measures what that costs.
"""

from __future__ import annotations

import atexit
import itertools
import multiprocessing
import os
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any

from helpers import swarm_worker
from helpers.kinds import Strategy as Strategy  # re-exported: helpers.lanes imports it from here
from helpers.launcher import PROJECT_ROOT, default_log_dir
from helpers.metrics import Metrics
from helpers.processes import cpu_seconds, kill_process_group
from helpers.swarm_engine import Attempt as Attempt
from helpers.swarm_engine import Backoff as Backoff
from helpers.swarm_engine import SwarmEngine

START_TIMEOUT_S = 30.0  # the host's first start imports aiohttp and the kit: seconds when loaded


class SwarmHost:
    """The one process, per kernel, where every swarm's clients run; `pid` is its pid."""

    def __init__(self) -> None:
        ours, theirs = multiprocessing.Pipe()
        path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
        #: What the host prints (a traceback, if it has a bug) goes here, never into a cell.
        self.log_path = default_log_dir() / "swarm-host.log"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c",
                 f"import helpers.swarm_worker as w; w.main({theirs.fileno()})"],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env=dict(os.environ, PYTHONPATH=path),
                start_new_session=True)  # the kernel's stop button (SIGINT) is not for it
        theirs.close()
        self.pid = self.process.pid
        self._conn = ours
        self._sending = threading.Lock()
        self._swarms: dict[int, Swarm] = {}
        self._ids = itertools.count()
        self.alive = True
        self.problems: list[str] = []  # what went wrong reading the host's reports (a bug)
        threading.Thread(target=self._read, name="swarm host", daemon=True).start()

    def register(self, swarm: Swarm) -> int:
        sid = next(self._ids)
        self._swarms[sid] = swarm
        return sid

    def unregister(self, sid: int) -> None:
        self._swarms.pop(sid, None)

    def send(self, *message: Any) -> None:
        with self._sending:
            self._conn.send(message)

    def stop(self, timeout: float = 5.0) -> None:
        """Tell the host to stop its swarms and exit; kill it, by its pid, if it won't."""
        try:
            self.send("exit", None)
        except OSError:  # it is gone already
            pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_process_group(self.process)
        # Only now: closing a pipe that the reader thread is blocked on would not wake it.
        self._conn.close()

    def _read(self) -> None:
        try:
            while True:
                try:
                    kind, sid, *rest = self._conn.recv()
                    swarm = self._swarms.get(sid)
                    if swarm is not None:
                        swarm._receive(kind, rest)
                except (EOFError, OSError):  # the host exited, or stop() closed the pipe
                    break
                except Exception as exc:  # a bug; the other swarms' reports go on regardless
                    self.problems.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.alive = False
            for swarm in list(self._swarms.values()):
                swarm._receive("stopped", [])


_host: SwarmHost | None = None
_host_lock = threading.Lock()


def swarm_host() -> SwarmHost:
    """The kernel's swarm host, started now if it is not running."""
    global _host
    with _host_lock:
        if _host is None or not _host.alive:
            if _host is not None:
                _host.stop()  # it exited already, or its pipe broke: make sure, by its pid
            _host = SwarmHost()
        return _host


def load_generator_cpu_seconds() -> float:
    """CPU seconds used so far by this process plus its swarm host: the clients' whole cost."""
    host = _host
    try:
        extra = cpu_seconds(host.pid) if host is not None and host.alive else 0.0
    except OSError:  # it exited a moment ago
        extra = 0.0
    return time.process_time() + extra


@atexit.register
def _stop_host() -> None:
    if _host is not None:
        _host.stop()


class Swarm(SwarmEngine):
    """`n` simulated clients of one strategy, all polling `url` until `stop()`."""

    def __init__(self, url: str, n: int, strategy: Strategy = "long", *, interval: float = 1.0,
                 hold: float = 30.0, metrics: Metrics | None = None, last_event_id: int = 0,
                 limit: int = 100, backoff_base: float = 0.1, backoff_cap: float = 5.0,
                 backoff: Backoff = "full-jitter", record: bool = False,
                 name: str = "swarm", compression: str | None = None,
                 client_ids: bool = False, process: bool = True) -> None:
        self._options: dict[str, Any] = dict(
            url=url, n=n, strategy=strategy, interval=interval, hold=hold,
            last_event_id=last_event_id, limit=limit, backoff_base=backoff_base,
            backoff_cap=backoff_cap, backoff=backoff, record=record, name=name,
            compression=compression)
        super().__init__(metrics=metrics, client_ids=client_ids, **self._options)
        self.process = process
        self.pid: int | None = None  # the host's, while this swarm runs there
        self._host: SwarmHost | None = None
        self._sid: int | None = None
        self._up = threading.Event()
        self._down = threading.Event()
        self._replies: dict[int, Future[Any]] = {}
        self._requests = itertools.count()
        if process:
            swarm_host()  # its start-up (a second or two of imports) overlaps the caller's

    @property
    def running(self) -> bool:
        if not self.process:
            return super().running
        return self._sid is not None and not self._down.is_set()

    def start(self) -> Swarm:
        """Start every client; returns once each has sent (or is about to send) its first poll."""
        if not self.process:
            super().start()
            return self
        if self.running:
            return self
        host = swarm_host()
        self._up.clear()
        self._down.clear()
        sid = host.register(self)
        self._host, self._sid, self.pid = host, sid, host.pid
        places = [(c.last_event_id, c.stream) for c in self.cursors]
        host.send("start", sid, self._options, places, [c.client_id for c in self.cursors])
        if not self._up.wait(START_TIMEOUT_S) or self._down.is_set():
            self._forget()
            raise RuntimeError(f"the swarm host (pid {host.pid}) did not start the swarm within "
                               f"{START_TIMEOUT_S:.0f} s; restart the kernel and try again")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel every client and close every connection; held polls are released at once.

        Returns once the host has reported the clients' last deliveries.
        """
        if not self.process:
            return super().stop(timeout)
        host, sid = self._host, self._sid
        if host is None or sid is None:
            return
        try:
            host.send("stop", sid, timeout)
        except OSError:  # the host is gone
            pass
        self._down.wait(timeout + 1)
        self._forget()

    def kill(self, n: int = 1, *, restart: bool = True, down_for: float = 0.0,
             rng: random.Random | None = None, timeout: float = 5.0) -> list[str]:
        """Kill `n` random running clients at once, as if their processes died mid-request.

        Each killed client's connection closes without a goodbye. With `restart`, each comes
        back `down_for` seconds later as a fresh client that kept its cursor (as an app that
        stored its `last_event_id` would), so it resumes where it was. Returns their names.
        """
        if not self.process:
            return super().kill(n, restart=restart, down_for=down_for, rng=rng, timeout=timeout)
        if not self.running or self._host is None:
            raise RuntimeError("the swarm is not running; start() it first")
        rng = rng or random.Random()
        request = next(self._requests)
        reply: Future[Any] = Future()
        self._replies[request] = reply
        self._host.send("kill", self._sid, request, n, restart, down_for, rng)
        names, state = reply.result(timeout)
        rng.setstate(state)  # the caller's generator moves on as if it had drawn here
        self.kills += len(names)
        return list(names)

    def _receive(self, kind: str, rest: list[Any]) -> None:
        """What the host said about this swarm (called on the host's reader thread)."""
        if kind == "batch":
            self._apply(rest[0])
        elif kind == "ready":
            self._up.set()
        elif kind == "killed":
            request, names, state = rest
            self._replies.pop(request).set_result((names, state))
        elif kind == "stopped":
            self._down.set()
            self._up.set()  # a start() still waiting gives up at once
            for reply in self._replies.values():
                reply.set_exception(RuntimeError("the swarm stopped"))
            self._replies.clear()

    def _apply(self, batch: swarm_worker.Batch) -> None:
        # Cursors first: a reader who sees a delivery in `metrics` then finds its cursor there.
        for i, (last_event_id, stream) in batch.places.items():
            cursor = self.cursors[i]
            cursor.last_event_id, cursor.stream = last_event_id, stream
        swarm_worker.replay(batch, self.metrics)
        self.attempts.extend(batch.attempts)
        self.errors.extend(batch.errors)

    def _forget(self) -> None:
        if self._host is not None and self._sid is not None:
            self._host.unregister(self._sid)
        self._host = self._sid = self.pid = None
