"""The live view of a `Comparison`: every lane in one table and two plots, with its controls.

    lab = Comparison()                 # four servers, one per lane
    panel = ComparePanel(lab)
    panel                              # shows it; pick a preset and click "Start"
    panel.run(seconds=10)              # what a scripted cell does: the same code path

Every button and slider calls a public method of this class, which calls the engine
(`Comparison`), and the table and figures are the same functions `python -m helpers.compare`
prints and saves. A timer thread refreshes the table twice
a second and the plots every two seconds; it only ever sets widget values and never prints.
"""

from __future__ import annotations

import html
import math
import threading
import time
from dataclasses import replace
from typing import Any

import ipywidgets as widgets

from helpers.compare.comparison import BURST_EVENTS, Comparison
from helpers.compare.figures import distribution_figure, live_figure
from helpers.compare.results import ComparisonResult
from helpers.compare.spec import PRESETS, Preset, find_preset
from helpers.compare.table import table_html
from helpers.plots import figure_png

REFRESH_S = 0.5
PLOT_EVERY = 4  # refreshes between two plot redraws: each costs ~0.2 s of this kernel's CPU
CUSTOM = "(your own settings)"


class ComparePanel:
    """Controls, a live table and live plots for every lane of a `Comparison`."""

    def __init__(self, lab: Comparison) -> None:
        self.lab = lab
        s = lab.scenario
        slider = {"continuous_update": False, "style": {"description_width": "14em"},
                  "layout": widgets.Layout(width="34em")}
        self.preset = widgets.Dropdown(options=[CUSTOM, *PRESETS], value=CUSTOM,
                                       description="preset", style=slider["style"],
                                       layout=widgets.Layout(width="34em"))
        self.preset_text = widgets.HTML(layout=widgets.Layout(width="44em"))
        self.clients_slider = widgets.IntSlider(value=s.clients, min=1, max=1000,
                                                description="clients per lane", **slider)
        self.rate_slider = widgets.FloatSlider(value=s.rate, min=0, max=50, step=0.05,
                                               description="events / s", **slider)
        self.interval_slider = widgets.FloatSlider(value=s.interval, min=0.1, max=10, step=0.1,
                                                   description="short-poll interval (s)",
                                                   **slider)
        self.hold_slider = widgets.FloatSlider(value=s.hold, min=1, max=60, step=1,
                                               description="long-poll hold (s)", **slider)
        self.check_slider = widgets.FloatSlider(value=s.check_interval, min=0.05, max=2,
                                                step=0.05, description="naive check interval (s)",
                                                **slider)
        self.start_button = widgets.Button(description="Start", icon="play",
                                           button_style="success")
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.reset_button = widgets.Button(description="Reset", icon="eraser")
        self.trigger_button = widgets.Button(description="Trigger 1", icon="bolt",
                                             button_style="warning")
        self.burst_button = widgets.Button(description=f"Burst ({BURST_EVENTS})", icon="bolt",
                                           button_style="danger")
        self.progress = widgets.FloatProgress(value=0, min=0, max=1, description="run",
                                              layout=widgets.Layout(visibility="hidden"))
        self.status = widgets.HTML()
        self.table = widgets.HTML()
        self.plot = widgets.Image(format="png", layout=widgets.Layout(width="990px"))
        self.distribution = widgets.Image(format="png", layout=widgets.Layout(width="990px"))

        self._syncing = False  # set while the panel moves its own sliders
        self.start_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.reset_button.on_click(lambda _: self.reset())
        self.trigger_button.on_click(lambda _: self.trigger())
        self.burst_button.on_click(lambda _: self.burst())
        self.preset.observe(self._on_preset, "value")
        for name, knob in self._knobs().items():
            knob.observe(lambda change, name=name: self._on_knob(name, change["new"]), "value")

        servers = " · ".join(f"{name} <code>{html.escape(lane.server.url)}</code>"
                             for name, lane in lab.lanes.items())
        self.widget = widgets.VBox([
            widgets.HTML(f"<b>Every strategy against the same events</b> "
                         f"<span style='color:#666'>({servers})</span>"),
            widgets.HBox([self.preset, self.preset_text]),
            widgets.HBox([widgets.VBox([self.clients_slider, self.rate_slider]),
                          widgets.VBox([self.interval_slider, self.hold_slider,
                                        self.check_slider])]),
            widgets.HBox([self.start_button, self.stop_button, self.reset_button,
                          self.trigger_button, self.burst_button]),
            self.progress, self.status, self.table, self.plot, self.distribution,
        ])
        self._ticks = 0
        self._drawn: tuple[int, int] = (-1, -1)
        self._closed = threading.Event()
        self._timer = threading.Thread(target=self._refresh_loop, name="compare-panel-refresh",
                                       daemon=True)
        self._timer.start()
        self.refresh(plots=True)

    # --- the actions: buttons call these, and so do scripted cells --------------------------

    def start(self) -> None:
        """Start every lane's clients and the auto-trigger, measuring afresh (the Start button)."""
        self._say("starting the clients…")
        self.lab.start()
        self.distribution.value = b""
        self._set_running(True)

    def stop(self) -> None:
        """Stop the clients and the auto-trigger; keep the numbers (the Stop button)."""
        self.lab.stop()
        self._set_running(False)
        self.refresh(plots=True)
        self._draw_distribution()

    def reset(self) -> None:
        """Forget the measurements and clear the plots (the Reset button)."""
        self.lab.reset()
        self.distribution.value = b""
        self.refresh(plots=True)

    def trigger(self, message: str | None = None) -> None:
        """Publish one event on every lane's server at once (the Trigger button)."""
        self.lab.trigger(message)
        self.refresh()

    def burst(self, n: int = BURST_EVENTS) -> None:
        """Publish `n` events on every lane at once (the Burst button)."""
        self.lab.burst(n)
        self.refresh()

    def configure(self, **changes: Any) -> None:
        """Change knobs (`clients`, `rate`, `interval`, `hold`, `check_interval`), as sliders do.

        Anything but the rate restarts the clients and starts a fresh measurement; a new check
        interval restarts the naive servers.
        """
        self._syncing = True
        try:
            self.preset.value = CUSTOM  # the knobs no longer match a preset
        finally:
            self._syncing = False
        self.preset_text.value = ""
        self._apply(changes)

    def apply_preset(self, name: str) -> Preset:
        """Set every knob to a preset's scenario and show what to look for (the dropdown)."""
        preset = find_preset(name)
        self._syncing = True
        try:
            self.preset.value = preset.name
        finally:
            self._syncing = False
        self._apply(vars(preset.scenario))
        self.preset_text.value = (f"<div style='font-size:90%;padding-left:1em'>"
                                  f"{html.escape(preset.description)}</div>")
        return preset

    def run(self, seconds: float, **changes: Any) -> ComparisonResult:
        """Measure for `seconds` with fresh counters, then stop; returns `Comparison.results()`.

        `changes` set knobs first, as `configure` does.
        """
        if changes:
            self.configure(**changes)
        self._set_running(True)
        self.progress.layout.visibility = "visible"
        try:
            results = self.lab.run(seconds, progress=self._show_progress)
        finally:
            self._set_running(False)
            self.progress.layout.visibility = "hidden"
        self.refresh(plots=True)
        self._draw_distribution()
        return results

    def results(self) -> ComparisonResult:
        """Everything measured since the last reset (see `Comparison.results`)."""
        return self.lab.results()

    def close(self) -> None:
        """Stop the clients and the timer and remove the widgets; the servers keep running."""
        self._closed.set()
        self.lab.stop()
        self.widget.close()

    # --- display -------------------------------------------------------------------------

    def refresh(self, plots: bool = False) -> None:
        """Redraw the table and the status line, and the live plots if asked or due."""
        results = self.lab.results()
        self.table.value = table_html(results)
        state = "running" if self.lab.running else "stopped"
        cpu_now = self.lab.recent_kernel_cpu_pct()
        now = "" if math.isnan(cpu_now) else f"{cpu_now:.0f} % now, "
        cpu = results.kernel_cpu_pct if math.isfinite(results.kernel_cpu_pct) else 0.0
        self._say(f"{state} · {results.total_seconds:.1f} s measured · load generator (this "
                  f"kernel): {now}{cpu:.0f} % of one core on average")
        drawn = (len(results.timeline), sum(row.deliveries for row in results.lanes))
        if plots or drawn != self._drawn:
            self._drawn = drawn
            self.plot.value = figure_png(live_figure(results))

    def _draw_distribution(self) -> None:
        self.distribution.value = figure_png(distribution_figure(self.lab))

    def _refresh_loop(self) -> None:
        while not self._closed.wait(REFRESH_S):
            if not self.lab.running:
                continue
            self._ticks += 1
            try:
                self.refresh(plots=self._ticks % PLOT_EVERY == 0)
            except Exception as exc:  # noqa: BLE001 - shown in the panel, never printed
                self._say(f"refresh failed: {exc}")

    def _knobs(self) -> dict[str, widgets.Widget]:
        return {"clients": self.clients_slider, "rate": self.rate_slider,
                "interval": self.interval_slider, "hold": self.hold_slider,
                "check_interval": self.check_slider}

    def _apply(self, changes: dict[str, Any]) -> None:
        """Move the sliders to `changes` without their observers, then configure once."""
        replace(self.lab.scenario, **changes)  # raises ValueError before anything moves
        knobs = self._knobs()
        self._syncing = True
        try:
            for name, value in changes.items():
                knobs[name].value = value
        finally:
            self._syncing = False
        if "check_interval" in changes and changes["check_interval"] != \
                self.lab.scenario.check_interval:
            self._say(f"restarting the naive servers with a {changes['check_interval']:g} s "
                      "check interval…")
        self.lab.configure(**changes)
        self.refresh(plots=True)

    def _on_knob(self, name: str, value: Any) -> None:
        if not self._syncing:
            self.configure(**{name: value})

    def _on_preset(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        if change["new"] == CUSTOM:
            self.preset_text.value = ""
        else:
            self.apply_preset(change["new"])

    def _set_running(self, running: bool) -> None:
        self.start_button.disabled = running
        self.stop_button.disabled = not running

    def _show_progress(self, fraction: float) -> None:
        self.progress.value = fraction

    def _say(self, text: str) -> None:
        self.status.value = (f"<span style='color:#555'>{html.escape(text)} "
                             f"({time.strftime('%H:%M:%S')})</span>")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
