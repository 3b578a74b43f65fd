"""`FaultPanel`: the faults behind buttons, on the kit's `PanelBase`."""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets

from helpers.faults.actions import cut_connections, kill_clients, restart_server, stall_server
from helpers.faults.publisher import Publisher
from helpers.launcher import Server
from helpers.panel import PanelBase
from helpers.plots import figure_png, latency_figure
from helpers.swarm import Swarm

CATCH_UP_S = 10.0  # how long Stop waits for every client to reach the last published id


@dataclass(frozen=True)
class Action:
    """One thing a `FaultPanel` did: when (HH:MM:SS) and what."""

    at: str
    text: str


class FaultPanel(PanelBase):
    """A running setup, and buttons that break it: restart, kill clients, cut, stall.

    **Start** starts the swarm and a `Publisher` of about `rate` events per second, **Trigger
    event** publishes one more, and **Stop** stops publishing, lets every client catch up, and
    stops the swarm. Each button calls the method of the same name, so code and clicks do the
    same thing: `start()`, `trigger()`, `stop()`, `restart()`, `kill_clients()`, `cut()`,
    `stall()`. Buttons whose target is missing (no swarm, no proxy) are disabled. `actions`
    lists what was done; `publisher` is the running (or last) publisher.
    """

    def __init__(self, server: Server, swarm: Swarm | None = None, proxy: Server | None = None,
                 kill_n: int = 10, stall_s: float = 2.0, rate: float = 20.0,
                 actions: list[Action] | None = None) -> None:
        super().__init__()
        self.server = server
        self.swarm = swarm
        self.proxy = proxy
        self.kill_n = kill_n
        self.stall_s = stall_s
        self.rate = rate
        self.actions: list[Action] = [] if actions is None else actions
        self.publisher: Publisher | None = None
        self.triggered = 0  # events published by this panel: the publisher's, and Trigger's

        def button(label: str, icon: str, action: Callable[[], object],
                   enabled: bool = True) -> widgets.Button:
            return self._button(label, icon, action, enabled=enabled,
                                layout=widgets.Layout(width="auto"))

        self.restart_button = button("Restart server", "refresh", self.restart)
        self.kill_button = button(f"Kill {self.kill_n} clients", "user-times",
                                  self.kill_clients, self.swarm is not None)
        self.cut_button = button("Cut at the proxy", "scissors", self.cut,
                                 self.proxy is not None)
        self.stall_button = button(f"Stall server {self.stall_s:g} s", "pause",
                                   lambda: self.stall(wait=False))
        self.refresh_button = button("Refresh", "eye", self.refresh)
        self.trigger_button = self._button("Trigger event", "bolt", self.trigger,
                                           style="warning")
        self._run_buttons()
        self.start_button.disabled = self.swarm is None
        self.counters = widgets.HTML()
        self.plot = widgets.Image(format="png", layout=widgets.Layout(width="720px"))
        self._show(
            widgets.HTML(f"<b>Faults</b> on <code>{html.escape(self.server.url)}</code>"
                         + (f" behind the proxy <code>{html.escape(self.proxy.url)}</code>"
                            if self.proxy else "")),
            widgets.HBox([self.trigger_button, self.start_button, self.stop_button]),
            widgets.HBox([self.restart_button, self.kill_button, self.cut_button,
                          self.stall_button, self.refresh_button]),
            widgets.HBox([self.counters, self.status]),
            self.plot,
        )
        self._drawn = -1
        self._start_refreshing()
        self.refresh()

    @property
    def live(self) -> bool:
        return self.swarm is not None and self.swarm.running

    def start(self) -> None:
        """Start the swarm and publish about `rate` events per second while you break things."""
        if self.swarm is None:
            raise RuntimeError("this panel has no swarm; pass FaultPanel(server, swarm=...)")
        self.swarm.start()
        if self.publisher is not None:
            self.publisher.stop()  # a second Start replaces the publisher, never doubles it
        self.publisher = Publisher(self.server, rate=self.rate,
                                   on_publish=self._count_publish).start()
        self._set_running(True)
        self._did(f"started {self.swarm.n} clients and about {self.rate:g} events/s")

    def stop(self) -> None:
        """Stop publishing, give every client up to CATCH_UP_S to catch up, stop the swarm."""
        if self.publisher is not None:
            self.publisher.stop()
        if self.swarm is not None and self.swarm.running:
            last = self.server.stats()["last_event_id"]
            deadline = time.monotonic() + CATCH_UP_S
            while (min(c.last_event_id for c in self.swarm.cursors) < last
                   and time.monotonic() < deadline):
                time.sleep(0.1)  # the last clients finish their backoff and catch up
            self.swarm.stop()
        self._set_running(False)
        self._did("stopped publishing and the clients")

    def trigger(self, message: str | None = None) -> dict[str, Any]:
        """Publish one event, exactly as the "Trigger event" button does."""
        event: dict[str, Any] = self.server.trigger(message)
        self._count_publish()
        self.refresh()
        return event

    def close(self) -> None:
        """Stop the publisher and the swarm, and remove the widgets."""
        if self.publisher is not None:
            self.publisher.stop()
        if self.swarm is not None:
            self.swarm.stop()
        super().close()

    def _count_publish(self) -> None:
        self.triggered += 1

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
        """Show the counters, the latency plot and the last actions."""
        rows = [f"<li>{html.escape(a.at)} {html.escape(a.text)}</li>" for a in self.actions[-6:]]
        self.status.value = f"<ul>{''.join(rows)}</ul>"
        if self.swarm is None:
            return
        m = self.swarm.metrics.summary()
        p95 = m["latency_ms_p95"]
        table = [("clients", f"{self.swarm.n}"), ("events triggered", f"{self.triggered:,}"),
                 ("events received", f"{m['events']:,}"),
                 ("errors (retried)", f"{m['errors']:,}"), ("duplicates", f"{m['duplicates']}"),
                 ("missing", f"{m['missing']}"), ("gaps reported", f"{m['gaps_reported']}"),
                 ("stream resets", f"{m['stream_resets']}"),
                 ("latency p95", "–" if math.isnan(p95) else f"{p95:,.0f} ms")]
        self.counters.value = "<table>" + "".join(
            f"<tr><td style='padding-right:1.5em'>{k}</td><td><b>{v}</b></td></tr>"
            for k, v in table) + "</table>"
        if m["events"] != self._drawn:
            self._drawn = m["events"]
            points = self.swarm.metrics.latencies_ms()
            self.plot.value = figure_png(latency_figure(points, self.swarm.metrics.started))

    def _did(self, text: str) -> None:
        self.actions.append(Action(time.strftime("%H:%M:%S"), text))
        self.refresh()

    def _set_running(self, running: bool) -> None:
        super()._set_running(running)
        self.start_button.disabled = running or self.swarm is None
