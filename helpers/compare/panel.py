"""The live view of a `Comparison`: every lane in one table and two plots, with its controls.

    lab = Comparison()                 # four servers, one per lane
    panel = ComparePanel(lab)
    panel                              # shows it; pick a preset and click "Start"
    panel.run(seconds=10)              # what a scripted cell does: the same code path

Every button and slider calls a public method of this class, which calls the engine
(`Comparison`), and the table and figures are the same functions `python -m helpers.compare`
prints and saves. The status line, the Start and Stop buttons, the progress bar and the refresh
thread are `helpers.panel.PanelBase`'s: it refreshes the table twice a second and, here, the
plots every two seconds; it only ever sets widget values and never prints.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import ipywidgets as widgets

from helpers.compare.comparison import BURST_EVENTS, Comparison
from helpers.compare.figures import distribution_figure, live_figure
from helpers.compare.results import ComparisonResult
from helpers.compare.spec import PRESETS, Preset, find_preset
from helpers.compare.table import table_html
from helpers.panel import PanelBase
from helpers.plots import figure_png

PLOT_EVERY = 4  # refreshes between two plot redraws: each costs ~0.2 s of this kernel's CPU
CUSTOM = "(your own settings)"


class ComparePanel(PanelBase):
    """Controls, a live table and live plots for every lane of a `Comparison`."""

    THREAD_NAME = "compare-panel-refresh"

    def __init__(self, lab: Comparison) -> None:
        super().__init__()
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
        self._run_buttons()
        self.reset_button = self._button("Reset", "eraser", self.reset)
        self.trigger_button = self._button("Trigger 1", "bolt", self.trigger, style="warning")
        self.burst_button = self._button(f"Burst ({BURST_EVENTS})", "bolt", self.burst,
                                         style="danger")
        self.table = widgets.HTML()
        self.plot = widgets.Image(format="png", layout=widgets.Layout(width="990px"))
        self.distribution = widgets.Image(format="png", layout=widgets.Layout(width="990px"))

        self._syncing = False  # set while the panel moves its own widgets
        self.preset.observe(self._on_preset, "value")
        for name, knob in self._knobs().items():
            knob.observe(lambda change, name=name: self._on_knob(name, change["new"]), "value")

        servers = " · ".join(f"{name} <code>{html.escape(lane.server.url)}</code>"
                             for name, lane in lab.lanes.items())
        self._show(
            widgets.HTML(f"<b>Every strategy against the same events</b> "
                         f"<span style='color:#666'>({servers})</span>"),
            widgets.HBox([self.preset, self.preset_text]),
            widgets.HBox([widgets.VBox([self.clients_slider, self.rate_slider]),
                          widgets.VBox([self.interval_slider, self.hold_slider,
                                        self.check_slider])]),
            widgets.HBox([self.start_button, self.stop_button, self.reset_button,
                          self.trigger_button, self.burst_button]),
            self.progress, self.status, self.table, self.plot, self.distribution,
        )
        self._drawn: tuple[int, int] = (-1, -1)
        self._start_refreshing()
        self.refresh(plots=True)

    @property
    def live(self) -> bool:
        return self.lab.running

    # --- the actions: buttons call these, and so do scripted cells --------------------------

    def start(self) -> None:
        """Start every lane's clients and the auto-trigger, measuring afresh (the Start button)."""
        self.say("starting the clients…")
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
        with self._quietly():
            self.preset.value = CUSTOM  # the knobs no longer match a preset
        self.preset_text.value = ""
        self._apply(changes)

    def apply_preset(self, name: str) -> Preset:
        """Set every knob to a preset's scenario and show what to look for (the dropdown)."""
        preset = find_preset(name)
        with self._quietly():
            self.preset.value = preset.name
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
        with self._running_with_progress() as progress:
            results = self.lab.run(seconds, progress=progress)
        self.refresh(plots=True)
        self._draw_distribution()
        return results

    def results(self) -> ComparisonResult:
        """Everything measured since the last reset (see `Comparison.results`)."""
        return self.lab.results()

    def close(self) -> None:
        """Stop the timer, the clients and the widgets; the servers keep running."""
        super().close()
        self.lab.stop()

    # --- display -------------------------------------------------------------------------

    def refresh(self, plots: bool = False) -> None:
        """Redraw the table and the status line, and the live plots if asked or due."""
        results = self.lab.results()
        self.table.value = table_html(results)
        state = "running" if self.lab.running else "stopped"
        cpu_now = self.lab.recent_kernel_cpu_pct()
        now = "" if math.isnan(cpu_now) else f"{cpu_now:.0f} % now, "
        cpu = results.kernel_cpu_pct if math.isfinite(results.kernel_cpu_pct) else 0.0
        self.say(f"{state} · {results.total_seconds:.1f} s measured · load generator (this "
                 f"kernel and its swarm's process): {now}{cpu:.0f} % of one core on average")
        drawn = (len(results.timeline), sum(row.deliveries for row in results.lanes))
        if plots or drawn != self._drawn:
            self._drawn = drawn
            self.plot.value = figure_png(live_figure(results))

    def _draw_distribution(self) -> None:
        self.distribution.value = figure_png(distribution_figure(self.lab))

    def _tick(self, n: int) -> None:
        self.refresh(plots=n % PLOT_EVERY == 0)

    @contextmanager
    def _quietly(self) -> Iterator[None]:
        """Move the panel's own widgets without their observers acting on it."""
        self._syncing = True
        try:
            yield
        finally:
            self._syncing = False

    def _knobs(self) -> dict[str, widgets.Widget]:
        return {"clients": self.clients_slider, "rate": self.rate_slider,
                "interval": self.interval_slider, "hold": self.hold_slider,
                "check_interval": self.check_slider}

    def _apply(self, changes: dict[str, Any]) -> None:
        """Move the sliders to `changes` without their observers, then configure once."""
        replace(self.lab.scenario, **changes)  # raises ValueError before anything moves
        knobs = self._knobs()
        with self._quietly():
            for name, value in changes.items():
                knobs[name].value = value
        if "check_interval" in changes and changes["check_interval"] != \
                self.lab.scenario.check_interval:
            self.say(f"restarting the naive servers with a {changes['check_interval']:g} s "
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
