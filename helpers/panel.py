"""A live ipywidgets panel over an `Experiment`: controls, counters and a latency plot.

    panel = Panel(server, strategy="short", interval=1.0)
    panel              # shows it; click "Start" and "Trigger event"
    panel.trigger()    # the same as clicking "Trigger event"
    panel.run(seconds=10, rate=0.5)

Every button and slider calls a public method, and every public method is what a headless
notebook calls, so there is one code path. A timer thread refreshes the counters and the plot
twice a second; it only ever sets widget values and never prints.
"""

from __future__ import annotations

import html
import math
import threading
import time
from typing import Any, cast

import ipywidgets as widgets

from helpers.experiment import Experiment, Settings, Strategy
from helpers.launcher import ServerHandle
from helpers.plots import figure_png, latency_figure

REFRESH_S = 0.5

_TITLES = {"short": "Short polling", "long": "Long polling"}


def _ms(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:,.1f} ms"


class Panel:
    """Live controls and measurements for one strategy against one server."""

    def __init__(self, server: ServerHandle, strategy: str = "long", **settings: Any) -> None:
        self.server = server
        self.experiment = Experiment(server, Settings(strategy=cast(Strategy, strategy),
                                                      **settings))
        s = self.experiment.settings
        naive = server.check_interval is not None and strategy == "long"

        self.trigger_button = widgets.Button(description="Trigger event", icon="bolt",
                                             button_style="warning")
        self.start_button = widgets.Button(description="Start", icon="play",
                                           button_style="success")
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.reset_button = widgets.Button(description="Reset counters", icon="eraser")
        slider = {"continuous_update": False, "style": {"description_width": "11em"},
                  "layout": widgets.Layout(width="28em")}
        self.rate_slider = widgets.FloatSlider(value=s.rate, min=0, max=10, step=0.1,
                                               description="auto events / s", **slider)
        knobs: list[widgets.Widget] = [self.rate_slider]
        self.interval_slider = widgets.FloatSlider(value=s.interval, min=0.1, max=5, step=0.1,
                                                   description="poll interval (s)", **slider)
        self.hold_slider = widgets.FloatSlider(value=s.hold, min=1, max=60, step=1,
                                               description="long-poll hold (s)", **slider)
        self.check_slider = widgets.FloatSlider(value=server.check_interval or 1.0, min=0.05,
                                                max=2, step=0.05,
                                                description="server check interval (s)",
                                                **slider)
        knobs.append(self.interval_slider if strategy == "short" else self.hold_slider)
        if naive:
            knobs.append(self.check_slider)
        self.progress = widgets.FloatProgress(value=0, min=0, max=1, description="run",
                                              layout=widgets.Layout(visibility="hidden"))
        self.counters = widgets.HTML()
        self.status = widgets.HTML()
        self.plot = widgets.Image(format="png", layout=widgets.Layout(width="720px"))

        self.trigger_button.on_click(lambda _: self.trigger())
        self.start_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.reset_button.on_click(lambda _: self.reset())
        self.rate_slider.observe(lambda c: self.set_rate(c["new"]), "value")
        self.interval_slider.observe(lambda c: self.configure(interval=c["new"]), "value")
        self.hold_slider.observe(lambda c: self.configure(hold=c["new"]), "value")
        self.check_slider.observe(lambda c: self.set_check_interval(c["new"]), "value")

        title = f"{_TITLES[strategy]}{' (naive sleep loop)' if naive else ''}"
        self.widget = widgets.VBox([
            widgets.HTML(f"<b>{html.escape(title)}</b> against <code>{server.kind}</code> "
                         f"at <code>{html.escape(server.url)}</code>"),
            widgets.HBox([self.trigger_button, self.start_button, self.stop_button,
                          self.reset_button]),
            widgets.VBox(knobs),
            self.progress,
            widgets.HBox([self.counters, self.status]),
            self.plot,
        ])
        self._drawn = -1
        self._closed = threading.Event()
        self._timer = threading.Thread(target=self._refresh_loop, name="panel-refresh",
                                       daemon=True)
        self._timer.start()
        self.refresh()

    # --- the actions: buttons call these, and so do headless notebooks ---------------------

    def trigger(self, message: str | None = None) -> dict[str, Any]:
        """Publish one event, exactly as the "Trigger event" button does."""
        event = self.experiment.trigger(message)
        self.refresh()
        return event

    def start(self) -> None:
        """Start the clients and the auto-trigger."""
        self.experiment.start()
        self._set_running(True)

    def stop(self) -> None:
        """Stop the clients and the auto-trigger; the measurements stay."""
        self.experiment.stop()
        self._set_running(False)
        self.refresh()

    def reset(self) -> None:
        """Zero the counters and clear the plot."""
        self.experiment.reset()
        self._drawn = -1
        self.refresh()

    def set_rate(self, rate: float) -> None:
        """Auto-trigger `rate` events per second (0 for manual triggers only)."""
        self.experiment.configure(rate=rate)
        self.rate_slider.value = rate

    def configure(self, **changes: Any) -> None:
        """Change `interval` or `hold`; running clients are restarted to use it."""
        running = self.experiment.running
        if running:
            self.experiment.stop()
        self.experiment.configure(**changes)
        if running:
            self.experiment.start()

    def set_check_interval(self, seconds: float) -> None:
        """Restart the naive server with a new check interval (it is a start-up option)."""
        running = self.experiment.running
        self.experiment.stop()
        self._say(f"Restarting the server with check_interval={seconds:g} s…")
        self.server.restart(check_interval=seconds)
        self._say(f"Server restarted with check_interval={seconds:g} s at {self.server.url}.")
        if running:
            self.experiment.start()

    def run(self, seconds: float, rate: float | None = None) -> dict[str, Any]:
        """Measure for `seconds` at `rate` events/s with fresh counters; return the summary."""
        previous_rate = self.experiment.settings.rate
        if rate is not None:
            self.set_rate(rate)
        self._set_running(True)
        self.progress.layout.visibility = "visible"
        try:
            summary = self.experiment.run(seconds, progress=self._show_progress)
        finally:
            self._set_running(False)
            self.progress.layout.visibility = "hidden"
            # A scripted run's rate is not a setting the learner chose: put theirs back, so
            # clicking Start afterwards does not publish events nobody asked for.
            self.set_rate(previous_rate)
        self.refresh()
        return summary

    def summary(self) -> dict[str, Any]:
        return self.experiment.summary()

    def close(self) -> None:
        """Stop everything this panel started and remove its widgets."""
        self.experiment.stop()
        self._closed.set()
        self.widget.close()

    # --- display -------------------------------------------------------------------------

    def refresh(self) -> None:
        """Redraw the counters, and the plot if anything new arrived."""
        m = self.experiment.summary()
        rpe = m["requests_per_event"]
        rows = [
            ("requests sent", f"{m['requests']:,}"),
            ("empty responses", f"{m['empty_responses']:,} ({m['empty_pct']:.0f} %)"),
            ("events triggered", f"{m['triggered']:,}"),
            ("events received", f"{m['events']:,}"),
            ("requests per event", "–" if math.isinf(rpe) else f"{rpe:.2f}"),
            ("latency p50", _ms(m["latency_ms_p50"])),
            ("latency p95", _ms(m["latency_ms_p95"])),
            ("latency max", _ms(m["latency_ms_max"])),
        ]
        if m["errors"]:
            rows.append(("errors", f"{m['errors']} (last: {html.escape(str(m['last_error']))})"))
        self.counters.value = "<table>" + "".join(
            f"<tr><td style='padding-right:1.5em'>{k}</td><td><b>{v}</b></td></tr>"
            for k, v in rows) + "</table>"
        if m["events"] != self._drawn:
            self._drawn = m["events"]
            self._draw()

    def _draw(self) -> None:
        s = self.experiment.settings
        reference = None
        label = ""
        if s.strategy == "short":
            reference, label = s.interval * 500, "half the poll interval"
        elif self.server.check_interval is not None:
            reference = self.server.check_interval * 500
            label = "half the server's check interval"
        points = self.experiment.metrics.latencies_ms()
        fig = latency_figure(points, self.experiment.metrics.started, reference_ms=reference,
                             reference_label=label)
        self.plot.value = figure_png(fig)

    def _refresh_loop(self) -> None:
        while not self._closed.wait(REFRESH_S):
            if self.experiment.running:
                try:
                    self.refresh()
                except Exception as exc:  # noqa: BLE001 - shown in the panel, not printed
                    self._say(f"Refresh failed: {exc}")

    def _set_running(self, running: bool) -> None:
        self.start_button.disabled = running
        self.stop_button.disabled = not running
        self._say("running…" if running else "stopped")

    def _show_progress(self, fraction: float) -> None:
        self.progress.value = fraction

    def _say(self, text: str) -> None:
        self.status.value = (f"<span style='color:#555;padding-left:2em'>"
                             f"{html.escape(text)} ({time.strftime('%H:%M:%S')})</span>")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
