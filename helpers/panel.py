"""Widget panels: `PanelBase`, what every panel shares, and `Panel`, the view of one `Experiment`.

    panel = Panel(server, strategy="short", interval=1.0)
    panel              # shows it; click "Start" and "Trigger event"
    panel.trigger()    # the same as clicking "Trigger event"
    panel.run(seconds=10, rate=0.5)

Every button and slider calls a public method, and every public method is what a headless
notebook calls, so there is one code path. A timer thread refreshes the counters and the plot
twice a second; it only ever sets widget values and never prints.

`PanelBase` holds the parts each panel would otherwise write again: the status line, the run
buttons (Start and Stop), the progress bar of a timed run, the refresh thread, display in a
notebook and `close()`. A panel adds its own widgets and says what `refresh()` draws.
"""

from __future__ import annotations

import html
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import ipywidgets as widgets

from helpers.experiment import Experiment, Settings
from helpers.kinds import STRATEGY_TITLES, Strategy
from helpers.launcher import ServerHandle
from helpers.plots import figure_png, latency_figure

REFRESH_S = 0.5  # seconds between two refreshes of a running panel


class PanelBase:
    """What every panel shares. A subclass builds its widgets, then calls `_show(...)`.

    * `status`: one line of HTML that `say()` writes (with the time, unless `STAMP` is off);
    * `start_button`, `stop_button` (made by `_run_buttons()`): they call `start()` and `stop()`,
      and `_set_running()` enables whichever makes sense;
    * `progress`: hidden, except during `with self._running_with_progress() as progress:`;
    * a refresh thread (`_start_refreshing()`): every `REFRESH_S` seconds, while `live` is true,
      it calls `_tick(n)`, which calls `refresh()` unless a subclass says otherwise. It only ever
      sets widget values: an exception is shown in the status line, never printed;
    * `widget`, the whole panel, which is what a notebook displays; `close()` removes it.
    """

    REFRESH_S = REFRESH_S
    STATUS_STYLE = "color:#555"
    STAMP = True  # end each status line with the time it was written
    THREAD_NAME = "panel-refresh"

    def __init__(self) -> None:
        self.status = widgets.HTML()
        self.progress = widgets.FloatProgress(value=0, min=0, max=1, description="run",
                                              layout=widgets.Layout(visibility="hidden"))
        self.widget: widgets.Box = widgets.VBox()
        self._closed = threading.Event()
        self._ticks = 0
        self._timer: threading.Thread | None = None

    # --- what a subclass uses to build itself ---------------------------------------------

    @staticmethod
    def _button(label: str, icon: str, action: Callable[[], object], *, style: str = "",
                enabled: bool = True, layout: widgets.Layout | None = None) -> widgets.Button:
        """A button that calls `action()` when clicked (its return value is ignored)."""
        button = widgets.Button(description=label, icon=icon, button_style=style,
                                disabled=not enabled, **({"layout": layout} if layout else {}))
        button.on_click(lambda _: action())
        return button

    def _run_buttons(self) -> tuple[widgets.Button, widgets.Button]:
        """Make `start_button` and `stop_button`, which call `start()` and `stop()`."""
        self.start_button = self._button("Start", "play", self.start, style="success")
        self.stop_button = self._button("Stop", "stop", self.stop, enabled=False)
        return self.start_button, self.stop_button

    def _show(self, *children: widgets.Widget) -> None:
        """Lay the panel out: `children`, top to bottom, in `widget`."""
        self.widget.children = children

    def _start_refreshing(self) -> None:
        """Start the refresh thread (once)."""
        if self._timer is None:
            self._timer = threading.Thread(target=self._refresh_loop, name=self.THREAD_NAME,
                                           daemon=True)
            self._timer.start()

    # --- what a subclass may override ------------------------------------------------------

    @property
    def live(self) -> bool:
        """Whether the refresh thread should refresh now (something is running)."""
        return False

    def start(self) -> None:
        """What the Start button does."""
        raise NotImplementedError

    def stop(self) -> None:
        """What the Stop button does."""
        raise NotImplementedError

    def refresh(self) -> None:
        """Redraw what the panel shows from what has been measured."""

    def _tick(self, n: int) -> None:
        """One beat of the refresh thread (the `n`-th while live)."""
        self.refresh()

    # --- shared behaviour ------------------------------------------------------------------

    def say(self, text: str) -> None:
        """Show `text` in the status line."""
        stamp = f" ({time.strftime('%H:%M:%S')})" if self.STAMP else ""
        self.status.value = (f"<span style='{self.STATUS_STYLE}'>{html.escape(text)}"
                             f"{stamp}</span>")

    def _set_running(self, running: bool) -> None:
        """Enable Start or Stop, whichever makes sense now."""
        self.start_button.disabled = running
        self.stop_button.disabled = not running

    def _show_progress(self, fraction: float) -> None:
        self.progress.value = fraction

    @contextmanager
    def _running_with_progress(self) -> Iterator[Callable[[float], None]]:
        """A timed run: buttons set to running and the progress bar shown, until the block ends.

        Yields the callback to hand to the engine: `progress(fraction)`.
        """
        self._set_running(True)
        self.progress.value = 0
        self.progress.layout.visibility = "visible"
        try:
            yield self._show_progress
        finally:
            self._set_running(False)
            self.progress.layout.visibility = "hidden"

    def _refresh_loop(self) -> None:
        while not self._closed.wait(self.REFRESH_S):
            if not self.live:
                continue
            self._ticks += 1
            try:
                self._tick(self._ticks)
            except Exception as exc:  # noqa: BLE001 - shown in the panel, never printed
                self.say(f"Refresh failed: {exc}")

    def close(self) -> None:
        """Stop the refresh thread and remove the widgets."""
        self._closed.set()
        self.widget.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _ms(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:,.1f} ms"


class Panel(PanelBase):
    """Live controls and measurements for one strategy against one server."""

    STATUS_STYLE = "color:#555;padding-left:2em"

    def __init__(self, server: ServerHandle, strategy: str = "long", **settings: Any) -> None:
        super().__init__()
        self.server = server
        self.experiment = Experiment(server, Settings(strategy=cast(Strategy, strategy),
                                                      **settings))
        s = self.experiment.settings
        naive = server.check_interval is not None and strategy == "long"

        self.trigger_button = self._button("Trigger event", "bolt", self.trigger,
                                           style="warning")
        self._run_buttons()
        self.reset_button = self._button("Reset counters", "eraser", self.reset)
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
        self.counters = widgets.HTML()
        self.plot = widgets.Image(format="png", layout=widgets.Layout(width="720px"))

        self.rate_slider.observe(lambda c: self.set_rate(c["new"]), "value")
        self.interval_slider.observe(lambda c: self.configure(interval=c["new"]), "value")
        self.hold_slider.observe(lambda c: self.configure(hold=c["new"]), "value")
        self.check_slider.observe(lambda c: self.set_check_interval(c["new"]), "value")

        title = f"{STRATEGY_TITLES[s.strategy]}{' (naive sleep loop)' if naive else ''}"
        self._show(
            widgets.HTML(f"<b>{html.escape(title)}</b> against <code>{server.kind}</code> "
                         f"at <code>{html.escape(server.url)}</code>"),
            widgets.HBox([self.trigger_button, self.start_button, self.stop_button,
                          self.reset_button]),
            widgets.VBox(knobs),
            self.progress,
            widgets.HBox([self.counters, self.status]),
            self.plot,
        )
        self._drawn = -1
        self._start_refreshing()
        self.refresh()

    @property
    def live(self) -> bool:
        return self.experiment.running

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
        self.say(f"Restarting the server with check_interval={seconds:g} s…")
        self.server.restart(check_interval=seconds)
        self.say(f"Server restarted with check_interval={seconds:g} s at {self.server.url}.")
        if running:
            self.experiment.start()

    def run(self, seconds: float, rate: float | None = None) -> dict[str, Any]:
        """Measure for `seconds` at `rate` events/s with fresh counters; return the summary."""
        previous_rate = self.experiment.settings.rate
        if rate is not None:
            self.set_rate(rate)
        try:
            with self._running_with_progress() as progress:
                summary = self.experiment.run(seconds, progress=progress)
        finally:
            # A scripted run's rate is not a setting the learner chose: put theirs back, so
            # clicking Start afterwards does not publish events nobody asked for.
            self.set_rate(previous_rate)
        self.refresh()
        return summary

    def summary(self) -> dict[str, Any]:
        """The experiment's summary: counters, latency percentiles in ms, and the settings."""
        return self.experiment.summary()

    def close(self) -> None:
        """Stop everything this panel started and remove its widgets."""
        self.experiment.stop()
        super().close()

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

    def _set_running(self, running: bool) -> None:
        super()._set_running(running)
        self.say("running…" if running else "stopped")
