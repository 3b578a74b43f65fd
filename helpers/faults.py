"""Faults on purpose: break a running setup the ways production breaks it, from code or buttons.

    restart_server(server)          # a deploy: held polls get 204, the port is down a moment
    crash_server(server)            # kill -9: held polls get no answer at all
    kill_clients(swarm, 10)         # ten clients die mid-request and come back
    cut_connections(proxy)          # the proxy drops every connection at once
    stall_server(server, 2.0)       # the server freezes for 2 s (SIGSTOP, then SIGCONT)

`FaultPanel` puts the same calls behind buttons. `reconnect_storm()` measures what a restart
under hundreds of clients does with each backoff policy, `Publisher` keeps events flowing while
you break things, and `delivery_report()` checks afterwards that nothing was lost.

Two clients here are deliberately wrong, to show a failure before its fix:
`WatchedLongPollClient(read_timeout=...)` accepts a read timeout shorter than the hold, and
`StreamBlindClient` ignores `X-Stream-Id` the way the article's client does.
"""

from __future__ import annotations

import html
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import ipywidgets as widgets
import requests
from requests.structures import CaseInsensitiveDict

from helpers import http
from helpers.clients import CONNECT_TIMEOUT_S, READ_MARGIN_S, Cursor, LongPollClient
from helpers.errors import PollError, PollingLabError, ServerUnavailable
from helpers.launcher import Server
from helpers.metrics import Metrics, percentile
from helpers.processes import kill_process_group
from helpers.swarm import Backoff, Swarm
from servers.contract import STREAM_HEADER, Event

# --- the faults --------------------------------------------------------------------------------


def restart_server(server: Server, **changes: Any) -> float:
    """Restart `server` gracefully on the same port (SIGTERM, then start again).

    Held polls are answered 204 before it exits; requests sent while it is down are refused.
    `changes` are start-up options (e.g. `store=...`). Returns the seconds it was down.
    """
    started = time.monotonic()
    server.restart(**changes)
    return time.monotonic() - started


def crash_server(server: Server, *, restart: bool = False) -> None:
    """Kill `server` with SIGKILL, as a crash or an out-of-memory kill would: no goodbye.

    Held polls get no answer; their connections just close. With `restart`, start it again on
    the same port afterwards.
    """
    if server.process is not None and server.process.poll() is None:
        kill_process_group(server.process)  # the server leads its own group
    if restart:
        server.restart()


def kill_clients(swarm: Swarm, n: int = 10, *, restart: bool = True, down_for: float = 0.0,
                 rng: random.Random | None = None) -> list[str]:
    """Kill `n` random clients of `swarm` mid-request; with `restart`, each comes back after
    `down_for` seconds with the cursor it had. Returns their names."""
    return swarm.kill(n, restart=restart, down_for=down_for, rng=rng)


def cut_connections(proxy: Server) -> int:
    """Make a proxy started with `launch("proxy", ...)` drop every open connection at once.

    Returns how many client connections it closed. Every request in flight through it fails
    with a connection error, as during a proxy restart or a load balancer failover. Raises
    ServerUnavailable if the proxy does not answer, PollError if `proxy` is not a proxy.
    """
    cut: int = http.request("POST", proxy.url + "/_proxy/cut").json()["connections"]
    return cut


def proxy_stats(proxy: Server) -> dict[str, Any]:
    """The proxy's own counters: forwarded requests, 502s, 504s, cuts (`GET /_proxy/stats`).

    Raises ServerUnavailable if the proxy does not answer, PollError if `proxy` is not a proxy.
    """
    stats: dict[str, Any] = http.request("GET", proxy.url + "/_proxy/stats").json()
    return stats


def stall_server(server: Server, seconds: float = 2.0, *, wait: bool = True) -> None:
    """Freeze `server` for `seconds` (SIGSTOP, then SIGCONT): it neither reads nor answers.

    New connections still complete (the kernel accepts them into the listen queue) and then
    hang, which is what a stalled server looks like from outside. With `wait=False`, return at
    once and resume it from a timer (what the panel's button does).
    """
    if not 0 < seconds <= 60:
        raise ValueError("stall for more than 0 and at most 60 seconds")
    server.pause()
    if wait:
        try:
            time.sleep(seconds)
        finally:
            server.resume()
    else:
        timer = threading.Timer(seconds, server.resume)
        timer.daemon = True
        timer.start()



# --- events that keep flowing while you break things ------------------------------------------


class Publisher:
    """Publish events on `server` at random intervals (about `rate` per second) in a thread.

    A publish that fails (the server is restarting) is counted in `failed` and not retried:
    `POST /trigger_event` is not idempotent, so a blind retry could publish an event twice.
    `last_id` is the highest id the server has confirmed.
    """

    def __init__(self, server: Server, rate: float = 20.0, *, total: int | None = None,
                 rng: random.Random | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be a positive number of events per second")
        self.server = server
        self.rate = rate
        self.total = total
        self.published = 0
        self.failed = 0
        self.last_id = 0
        self.done = threading.Event()  # set when `total` events have been confirmed
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._session = http.session_for(server.url)

    def start(self) -> Publisher:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._session.close()

    def _run(self) -> None:
        while not self._stop.wait(self._rng.expovariate(self.rate)):
            if self.total is not None and self.last_id >= self.total:
                self.done.set()
                return
            try:
                response = http.request("POST", self.server.url + "/trigger_event",
                                        session=self._session,
                                        json={"message": f"event {self.published + 1}"})
            except PollingLabError:
                self.failed += 1
                continue
            self.published += 1
            self.last_id = max(self.last_id, int(response.json()["event"]["id"]))

    def __enter__(self) -> Publisher:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def ids_by_client(metrics: Metrics) -> dict[Hashable, list[int]]:
    """Every event id each client received, in the order received."""
    received: dict[Hashable, list[int]] = defaultdict(list)
    for delivery in list(metrics.deliveries):
        received[delivery.client].append(delivery.event_id)
    return received


def delivery_report(metrics: Metrics, last_id: int, clients: Sequence[Hashable] = ()
                    ) -> dict[str, Any]:
    """Did every client get every id from 1 to `last_id` exactly once, in order?

    `clients` lists the clients to check (those that received nothing count too). Returns
    `complete` (clients with exactly 1..last_id), `incomplete` (names of the others) and the
    recorder's own counters: duplicates, missing, gaps_reported, stream_resets, errors.
    """
    received = ids_by_client(metrics)
    names = list(clients) or list(received)
    expected = list(range(1, last_id + 1))
    incomplete = [name for name in names if received.get(name, []) != expected]
    summary = metrics.summary()
    return {
        "clients": len(names),
        "complete": len(names) - len(incomplete),
        "incomplete": incomplete,
        "last_id": last_id,
        **{key: summary[key] for key in ("duplicates", "missing", "gaps_reported",
                                         "stream_resets", "errors")},
    }


# --- a reconnect storm, measured ---------------------------------------------------------------


@dataclass
class Storm:
    """What `reconnect_storm()` measured. Times are seconds after the restart began."""

    backoff: str
    clients: int
    down_s: float  # how long the restart took (stop + start)
    reconnect_s: list[float]  # per client: when its first successful request after it was sent
    answered_s: list[float]  # when each request the server answered was sent
    refused_s: list[float]  # when each request that got no answer was sent
    not_reconnected: int = 0
    bin_s: float = 0.1

    def peak_reconnect_rate(self) -> float:
        """The most reconnections in any `bin_s` window, per second."""
        return max(rate_per_bin(self.reconnect_s, self.bin_s), default=0) / self.bin_s

    def peak_request_rate(self) -> float:
        """The most requests the server answered in any `bin_s` window, per second."""
        return max(rate_per_bin(self.answered_s, self.bin_s), default=0) / self.bin_s

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.reconnect_s)
        return {
            "backoff": self.backoff,
            "clients": self.clients,
            "reconnected": len(ordered),
            "not_reconnected": self.not_reconnected,
            "down_s": self.down_s,
            "first_reconnect_s": ordered[0] if ordered else float("nan"),
            "median_reconnect_s": percentile(ordered, 50),
            "last_reconnect_s": ordered[-1] if ordered else float("nan"),
            "peak_reconnects_per_s": self.peak_reconnect_rate(),
            "peak_requests_per_s": self.peak_request_rate(),
            "refused_attempts": len(self.refused_s),
        }


def rate_per_bin(times: Sequence[float], bin_s: float) -> list[int]:
    """How many of `times` (seconds, >= 0) fall into each window of `bin_s` seconds."""
    if not times:
        return []
    counts = [0] * (int(max(times) / bin_s) + 1)
    for t in times:
        if t >= 0:
            counts[int(t / bin_s)] += 1
    return counts


def reconnect_storm(server: Server, clients: int = 500, *, backoff: Backoff = "full-jitter",
                    hold: float = 30.0, backoff_base: float = 0.1, backoff_cap: float = 5.0,
                    downtime: float = 2.0, hard: bool = False, timeout: float = 20.0) -> Storm:
    """Restart `server` under `clients` held long polls and time every client's way back.

    The server stays down for at least `downtime` seconds (a real deploy takes a while). A
    client's reconnect time is when it sent its first successful request after a failure that
    followed the restart, relative to the moment the restart began. `hard` crashes the server
    (SIGKILL) instead of stopping it gracefully. An in-memory server that already holds events
    is restarted once first, so that it starts empty. The swarm is stopped before returning.
    """
    if not server.options.get("store") and server.stats()["last_event_id"]:
        server.restart()  # an empty in-memory log: after the crash, one event answers every poll
    cursor = server.stats()["last_event_id"]
    swarm = Swarm(server.url, clients, "long", hold=hold, backoff=backoff, record=True,
                  backoff_base=backoff_base, backoff_cap=backoff_cap, name=f"storm-{backoff}",
                  last_event_id=cursor)
    with swarm:
        deadline = time.monotonic() + timeout
        while server.stats()["waiting"] < clients and time.monotonic() < deadline:
            time.sleep(0.05)
        began = time.time()
        if hard:
            crash_server(server)
        else:
            server.stop()
        time.sleep(max(0.0, began + downtime - time.time()))
        server.restart()
        down_s = time.time() - began
        # A held poll is known to have succeeded only when it is answered: once every client
        # is held again, publish until an id passes their cursor, which answers them all, and
        # each answer records its send time.
        deadline = time.monotonic() + timeout
        while server.stats()["waiting"] < clients and time.monotonic() < deadline:
            time.sleep(0.05)
        while server.trigger("everyone is back")["id"] <= cursor:
            pass
        deadline = time.monotonic() + 5
        while (len(_reconnects(swarm.attempts, began)) < clients
               and time.monotonic() < deadline):
            time.sleep(0.05)
    attempts = list(swarm.attempts)
    reconnects = _reconnects(attempts, began)
    later = [a for a in attempts if a.sent_at >= began]
    return Storm(
        backoff=backoff, clients=clients, down_s=down_s,
        reconnect_s=sorted(t - began for t in reconnects.values()),
        answered_s=sorted(a.sent_at - began for a in later if a.status),
        refused_s=sorted(a.sent_at - began for a in later if not a.status),
        not_reconnected=clients - len(reconnects),
    )


def _reconnects(attempts: Sequence[Any], began: float) -> dict[str, float]:
    """Per client, the send time of its first success after its first failure after `began`."""
    failed_at: dict[str, float] = {}
    back_at: dict[str, float] = {}
    for a in sorted(list(attempts), key=lambda a: a.sent_at):
        if a.sent_at < began or a.client in back_at:
            continue
        if not a.ok:
            failed_at.setdefault(a.client, a.sent_at)
        elif a.client in failed_at:
            back_at[a.client] = a.sent_at
    return back_at


# --- deliberately naive or misconfigured clients, for the lessons -----------------------------


def _outcome(exc: Exception) -> str:
    cause = exc.__cause__
    if isinstance(cause, requests.ReadTimeout):
        return "read timeout"
    if isinstance(cause, requests.RequestException):
        return "connection error"
    if isinstance(exc, PollError):
        return str(exc.status)
    text = str(exc)
    return text[5:8] if text.startswith("HTTP ") else type(exc).__name__


class WatchedLongPollClient(LongPollClient):
    """A `LongPollClient` that notes how every poll ended, with a read timeout you choose.

    `outcomes` counts "200", "204", "504", "read timeout", "connection error", ... and
    `timeline` lists (seconds since start, outcome). `read_timeout` defaults to the kit's
    hold + 5 s; set it below the hold to watch the misconfiguration the lesson is about.
    """

    def __init__(self, url: str, hold: float = 30.0, *, read_timeout: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(url, hold, **kwargs)
        self.read_timeout = hold + READ_MARGIN_S if read_timeout is None else read_timeout
        if self.read_timeout <= 0:
            raise ValueError("read_timeout must be a positive number of seconds")
        self.outcomes: Counter[str] = Counter()
        self.timeline: list[tuple[float, str]] = []
        self._started = time.monotonic()

    def start(self) -> WatchedLongPollClient:
        self._started = time.monotonic()
        super().start()
        return self

    def _timeout(self) -> tuple[float, float]:
        return (CONNECT_TIMEOUT_S, self.read_timeout)

    def poll_once(self) -> list[Event]:
        try:
            events = super().poll_once()
        except (ServerUnavailable, PollError) as exc:
            if not self._stop.is_set():
                self._note(_outcome(exc))
            raise
        self._note("200" if events else "204")
        return events

    def _note(self, outcome: str) -> None:
        self.outcomes[outcome] += 1
        self.timeline.append((time.monotonic() - self._started, outcome))


class _StreamBlindCursor(Cursor):
    def apply(self, status: int, headers: Any, payload: Any, received_at: float) -> list[Event]:
        blind = CaseInsensitiveDict({k: v for k, v in headers.items()
                                     if k.lower() != STREAM_HEADER.lower()})
        return super().apply(status, blind, payload, received_at)


class StreamBlindClient(LongPollClient):
    """DELIBERATELY NAIVE, for one lesson: a long-poll client that ignores `X-Stream-Id`.

    Like the article's client, it trusts its `last_event_id` forever. When a server with an
    in-memory log restarts, the new log's ids start again at 1, below this client's cursor, so
    it waits for ids it has "already seen": it stalls, and later skips the new events whose ids
    it had passed, without anything counting them as missing. Use `LongPollClient` instead.
    """

    def __init__(self, url: str, hold: float = 30.0, **kwargs: Any) -> None:
        super().__init__(url, hold, **kwargs)
        self.cursor = _StreamBlindCursor(self.cursor.name, self.metrics,
                                         self.cursor.last_event_id)


# --- the widget panel -----------------------------------------------------------------------


@dataclass
class _Action:
    at: str
    text: str


@dataclass
class FaultPanel:
    """Buttons that break things: restart, kill clients, cut at the proxy, stall the server.

    Each button calls the method of the same name, so code and clicks do the same thing:
    `restart()`, `kill_clients()`, `cut()`, `stall()`. Buttons whose target is missing (no
    swarm, no proxy) are disabled. `actions` lists what was done.
    """

    server: Server
    swarm: Swarm | None = None
    proxy: Server | None = None
    kill_n: int = 10
    stall_s: float = 2.0
    actions: list[_Action] = field(default_factory=list)

    def __post_init__(self) -> None:
        def button(label: str, icon: str, enabled: bool = True) -> widgets.Button:
            return widgets.Button(description=label, icon=icon, disabled=not enabled,
                                  layout=widgets.Layout(width="auto"))

        self.restart_button = button("Restart server", "refresh")
        self.kill_button = button(f"Kill {self.kill_n} clients", "user-times",
                                  self.swarm is not None)
        self.cut_button = button("Cut at the proxy", "scissors", self.proxy is not None)
        self.stall_button = button(f"Stall server {self.stall_s:g} s", "pause")
        self.refresh_button = button("Refresh", "eye")
        self.restart_button.on_click(lambda _: self.restart())
        self.kill_button.on_click(lambda _: self.kill_clients())
        self.cut_button.on_click(lambda _: self.cut())
        self.stall_button.on_click(lambda _: self.stall(wait=False))
        self.refresh_button.on_click(lambda _: self.refresh())
        self.status = widgets.HTML()
        self.widget = widgets.VBox([
            widgets.HTML(f"<b>Faults</b> on <code>{html.escape(self.server.url)}</code>"
                         + (f" behind the proxy <code>{html.escape(self.proxy.url)}</code>"
                            if self.proxy else "")),
            widgets.HBox([self.restart_button, self.kill_button, self.cut_button,
                          self.stall_button, self.refresh_button]),
            self.status,
        ])
        self.refresh()

    def restart(self) -> float:
        """Restart the server gracefully; returns the seconds it was down."""
        down = restart_server(self.server)
        self._did(f"restarted the server ({down:.2f} s down)")
        return down

    def kill_clients(self, n: int | None = None) -> list[str]:
        """Kill `n` (default `kill_n`) random swarm clients; they come back with their cursor."""
        if self.swarm is None:
            raise RuntimeError("this panel has no swarm; pass FaultPanel(server, swarm=...)")
        killed = kill_clients(self.swarm, n or self.kill_n)
        self._did(f"killed and restarted {len(killed)} clients")
        return killed

    def cut(self) -> int:
        """Make the proxy drop every connection; returns how many it closed."""
        if self.proxy is None:
            raise RuntimeError("this panel has no proxy; pass FaultPanel(server, proxy=...)")
        cut = cut_connections(self.proxy)
        self._did(f"the proxy cut {cut} connections")
        return cut

    def stall(self, seconds: float | None = None, *, wait: bool = True) -> None:
        """Freeze the server for `seconds` (default `stall_s`)."""
        seconds = seconds or self.stall_s
        stall_server(self.server, seconds, wait=wait)
        self._did(f"stalled the server for {seconds:g} s")

    def refresh(self) -> None:
        rows = [f"<li>{html.escape(a.at)} {html.escape(a.text)}</li>" for a in self.actions[-6:]]
        counters = ""
        if self.swarm is not None:
            m = self.swarm.metrics.summary()
            counters = (f"clients: {self.swarm.n}, events delivered: {m['events']:,}, "
                        f"errors (retried): {m['errors']:,}, duplicates: {m['duplicates']}, "
                        f"missing: {m['missing']}, gaps reported: {m['gaps_reported']}, "
                        f"stream resets: {m['stream_resets']}")
        self.status.value = f"<div>{counters}</div><ul>{''.join(rows)}</ul>"

    def close(self) -> None:
        self.widget.close()

    def _did(self, text: str) -> None:
        self.actions.append(_Action(time.strftime("%H:%M:%S"), text))
        self.refresh()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
