"""`SharingPanel`: a cluster behind its gateway, live, with clients, events and a kill button."""

from __future__ import annotations

import html
import threading
from typing import Any

import ipywidgets as widgets

from helpers.cluster import Cluster
from helpers.errors import PollingLabError
from helpers.panel import PanelBase
from helpers.plots import figure_png, latency_figure
from helpers.sharing.audience import Audience, Publish, Publishing
from helpers.sharing.faults import upstream_health
from helpers.sharing.lessons import audience_for, prefix_for
from helpers.sharing.results import Tally


class SharingPanel(PanelBase):
    """Clients polling `cluster` through its gateway while events are published through it.

    **Start** starts `clients` long polls and about `rate` publishes a second, **Trigger event**
    publishes one, **Kill server 1** kills the first server (SIGKILL), **Restart server 1**
    starts it again, **Stop** stops publishing and the clients. Each button calls the method of
    the same name (`start`, `trigger`, `kill`, `restart`, `stop`); `tally()` counts what the
    clients lost and received twice so far, by message.
    """

    def __init__(self, cluster: Cluster, clients: int = 30, rate: float = 5.0) -> None:
        super().__init__()
        self.cluster = cluster
        self.n = clients
        self.rate = rate
        self.audience: Audience | None = None
        self.last_tally: Tally | None = None  # what the last clients lost, set by stop()
        self.publishing = Publishing(cluster.url, prefix=prefix_for("live"))
        self._stop_publishing = threading.Event()
        self._publisher: threading.Thread | None = None
        self.trigger_button = self._button("Trigger event", "bolt", self.trigger,
                                           style="warning")
        self._run_buttons()
        self.kill_button = self._button("Kill server 1", "times", self.kill, style="danger")
        self.restart_button = self._button("Restart server 1", "refresh", self.restart)
        self.servers_table = widgets.HTML()
        self.counters = widgets.HTML()
        self.plot = widgets.Image(format="png", layout=widgets.Layout(width="720px"))
        self._drawn = -1  # deliveries in the plot; -1 draws the empty axes at once
        self._triggered_before = 0  # publishes of earlier runs: the counter never goes back
        self._show(
            widgets.HTML(f"<b>{len(cluster.servers)} servers</b> behind the gateway "
                         f"<code>{html.escape(cluster.url)}</code>"),
            widgets.HBox([self.trigger_button, self.start_button, self.stop_button,
                          self.kill_button, self.restart_button]),
            widgets.HBox([self.servers_table, self.counters]),
            self.plot,
            self.status,
        )
        self._start_refreshing()
        self.refresh()

    @property
    def live(self) -> bool:
        return self.audience is not None

    def start(self) -> None:
        """Start the clients, and publish about `rate` events a second through the gateway."""
        if self.audience is not None:
            return
        self.audience = audience_for(self.cluster, self.n, name="live").start()
        self._triggered_before += len(self.publishing.sent)
        self.publishing.close()  # a new run counts its own publishes
        self.publishing = Publishing(self.cluster.url, prefix=prefix_for("live"))
        self._stop_publishing.clear()
        self._publisher = threading.Thread(target=self._publish_loop, name="panel-publisher",
                                           daemon=True)
        self._publisher.start()
        self._set_running(True)
        self.say(f"started {self.n} clients and about {self.rate:g} events/s")

    def _publish_loop(self) -> None:
        while not self._stop_publishing.wait(1 / self.rate):
            self.publishing.one()  # a refused publish is counted in `failed`, never printed

    def trigger(self) -> Publish | None:
        """Publish one event through the gateway, as the button does."""
        sent = self.publishing.one()
        self.refresh()
        return sent

    def kill(self, i: int = 0) -> None:
        """Kill server `i` (SIGKILL): its held polls end without an answer."""
        self.cluster.kill(i)
        self.say(f"killed server {i + 1}")

    def restart(self, i: int = 0) -> None:
        """Start server `i` again; the gateway puts it back in its rotation."""
        self.cluster.restart(i)
        self.say(f"restarted server {i + 1}")

    def stop(self) -> None:
        """Stop publishing, let the clients catch up (up to 5 s), stop them.

        What they lost and received twice stays in `last_tally`.
        """
        self._stop_publishing.set()
        if self._publisher is not None:
            self._publisher.join(5)
        if self.audience is not None:
            self.audience.wait_for(self.publishing.sent, timeout=5.0)
            self.last_tally = self.tally()
            self.audience.stop()
            self.audience = None
        self._set_running(False)
        self.refresh()
        self.say("stopped publishing and the clients")

    def tally(self) -> Tally | None:
        """What the running clients (once stopped, the last ones) lost and received twice."""
        if self.audience is None:
            return self.last_tally
        return self.audience.tally(self.publishing.sent)

    def close(self) -> None:
        """Stop the publisher and the clients, and remove the widgets."""
        self.stop()
        self.publishing.close()
        super().close()

    def refresh(self) -> None:
        """Show each server's pid, rotation and held polls, and the clients' counters."""
        try:
            rotation = upstream_health(self.cluster)
        except PollingLabError:
            rotation = [False] * len(self.cluster.servers)
        rows = []
        for k, server in enumerate(self.cluster.servers):
            held: Any = "down"
            if server.running:
                try:
                    held = server.stats()["waiting"]
                except PollingLabError:
                    held = "?"
            pid = server.pid if server.running else "–"
            state = "in rotation" if k < len(rotation) and rotation[k] else "out"
            rows.append(f"<tr><td>server {k + 1}</td><td>pid {pid}</td><td>{state}</td>"
                        f"<td><b>{held}</b> held</td></tr>")
        self.servers_table.value = "<table>" + "".join(rows) + "</table>"
        counts = [("events triggered", self._triggered_before + len(self.publishing.sent))]
        tally = self.tally()
        if tally is not None:
            counts += [("lost (client × event)", tally.lost), ("duplicates", tally.duplicates),
                     ("cursor jumps", tally.stream_resets), ("errors (retried)", tally.errors)]
        self.counters.value = "<table style='margin-left:2em'>" + "".join(
            f"<tr><td>{label}</td><td><b>{value:,}</b></td></tr>" for label, value in counts
        ) + "</table>"
        self._draw()

    def _draw(self) -> None:
        """Each delivery to the running clients as a dot, redrawn when there are new ones."""
        if self.audience is None and self._drawn >= 0:
            return  # stopped: keep the last run's picture
        points = self.audience.metrics.latencies_ms() if self.audience is not None else []
        if len(points) == self._drawn:
            return
        self._drawn = len(points)
        started = self.audience.metrics.started if self.audience is not None else 0.0
        fig = latency_figure(points, started, title="Each delivery through the gateway")
        self.plot.value = figure_png(fig)
