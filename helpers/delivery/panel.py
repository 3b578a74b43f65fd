"""Notebook 07's live panel: one lane per delivery style, all on the same events.

    panel = StylesPanel(server)
    panel            # click Start, then Trigger event
    panel.run(seconds=10, rate=5)

Each lane is a real client (LongPollClient, SSEClient, WebSocketClient) behind its own
`WireCounter`, so the table shows bytes counted at the socket next to latency. The buttons call
the public methods; a timer thread redraws twice a second and never prints.
"""

from __future__ import annotations

import html
import math
import threading
import time
from typing import Any

import ipywidgets as widgets
from matplotlib.figure import Figure

from helpers.delivery.lesson import STYLES, TITLES, Style, client_for
from helpers.delivery.wire import WireCounter
from helpers.launcher import ServerHandle
from helpers.panel import PanelBase
from helpers.plots import figure_png

COLORS = {"long": "tab:blue", "sse": "tab:orange", "ws": "tab:green"}


class StylesPanel(PanelBase):
    """Three lanes (long polling, SSE, WebSocket) against one server, one trigger for all."""

    THREAD_NAME = "styles-panel"

    def __init__(self, server: ServerHandle) -> None:
        super().__init__()
        self.server = server
        self.wires = {style: WireCounter(server.url).start() for style in STYLES}
        self.clients: dict[Style, Any] = {}
        self.triggered = 0
        self._auto = threading.Event()
        self._rate = 0.0
        self.trigger_button = self._button("Trigger event", "bolt", self.trigger,
                                           style="warning")
        self.rate_slider = widgets.FloatSlider(value=0, min=0, max=100, step=1,
                                               description="auto events / s",
                                               continuous_update=False,
                                               style={"description_width": "9em"})
        self.rate_slider.observe(lambda change: self.set_rate(change["new"]), "value")
        self.table = widgets.HTML()
        self.plot = widgets.Image(format="png", layout=widgets.Layout(width="720px"))
        self._show(
            widgets.HTML(f"<b>Long polling, SSE and WebSocket</b> on the same events from "
                         f"<code>{html.escape(server.url)}</code>"),
            widgets.HBox([self.trigger_button, *self._run_buttons()]),
            self.rate_slider, self.status, self.table, self.plot)
        self._drawn = -1
        self._start_refreshing()
        self.refresh()

    @property
    def live(self) -> bool:
        return self.running

    def start(self) -> None:
        """Start one client per style, from the newest event on."""
        if self.running:
            return
        start = self.server.stats()["last_event_id"]
        for style in STYLES:
            self.wires[style].reset()
            self.clients[style] = client_for(style, self.wires[style].url,
                                             last_event_id=start).start()
        self._set_running(True)
        self.say("three clients running")

    @property
    def running(self) -> bool:
        return any(client.running for client in self.clients.values())

    def stop(self) -> None:
        for client in self.clients.values():
            client.stop()
        self._set_running(False)
        self.say("stopped")
        self.refresh()

    def trigger(self, message: str | None = None) -> dict[str, Any]:
        """Publish one event: every lane should show it a few milliseconds later."""
        self.triggered += 1
        return self.server.trigger(message)

    def set_rate(self, rate: float) -> None:
        """Publish about `rate` events per second from a thread (0: only the button)."""
        self._rate = rate
        self.rate_slider.value = rate
        if rate > 0 and not self._auto.is_set():
            self._auto.set()
            threading.Thread(target=self._auto_trigger, daemon=True).start()
        elif rate <= 0:
            self._auto.clear()

    def run(self, seconds: float, rate: float) -> dict[Style, dict[str, Any]]:
        """Start, publish at `rate` for `seconds`, stop; the summary of each lane."""
        self.start()
        time.sleep(0.3)  # let the first long poll be held and the streams open
        self.set_rate(rate)
        time.sleep(seconds)
        self.set_rate(0)
        time.sleep(0.3)
        self.stop()
        return self.summaries()

    def summaries(self) -> dict[Style, dict[str, Any]]:
        out: dict[Style, dict[str, Any]] = {}
        for style, client in self.clients.items():
            m = client.metrics.summary()
            sent = self.wires[style].counts()
            m["bytes_per_event"] = (sent.up + sent.down) / m["events"] if m["events"] else math.nan
            out[style] = m
        return out

    def close(self) -> None:
        self.set_rate(0)
        self.stop()
        for wire in self.wires.values():
            wire.stop()
        super().close()

    def refresh(self) -> None:
        rows = "".join(
            f"<tr><td>{TITLES[s]}</td><td>{m['events']}</td><td>{m['requests']}</td>"
            f"<td>{m['latency_ms_p50']:.1f}</td><td>{m['latency_ms_p95']:.1f}</td>"
            f"<td>{m['bytes_per_event']:.0f}</td><td>{m['missing']}</td></tr>"
            for s, m in self.summaries().items())
        self.table.value = (
            f"<p>events triggered from this panel: {self.triggered}</p><table><tr>"
            "<th>style</th><th>events</th><th>requests</th><th>p50 ms</th><th>p95 ms</th>"
            "<th>bytes / event (both ways)</th><th>missing</th></tr>" + rows + "</table>")
        total = sum(len(c.metrics.deliveries) for c in self.clients.values())
        if total != self._drawn:
            self._drawn = total
            self.plot.value = figure_png(self._figure())

    def _figure(self) -> Figure:
        fig = Figure(figsize=(7.5, 2.6), dpi=96, layout="constrained")
        ax = fig.add_subplot()
        for style, client in self.clients.items():
            points = client.metrics.latencies_ms()
            if points:
                ax.scatter([t - client.metrics.started for t, _ in points],
                           [ms for _, ms in points], s=12, alpha=0.7, color=COLORS[style],
                           label=TITLES[style])
        ax.set_xlabel("seconds since start")
        ax.set_ylabel("latency (ms)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if self.clients:
            ax.legend(loc="upper left", fontsize=8)
        return fig

    def _auto_trigger(self) -> None:
        while self._auto.is_set() and not self._closed.is_set():
            started = time.monotonic()
            self.trigger()
            time.sleep(max(0.0, 1 / max(self._rate, 1e-3) - (time.monotonic() - started)))
