"""`ScalingExplorer`: a slider for the largest number of waiting clients, and a sweep button.

    ScalingExplorer({"asyncio": a, "flask": f})   # a slider and a button for `sweep`
"""

from __future__ import annotations

import threading
import time
from typing import Any

import ipywidgets as widgets

from helpers.launcher import Server
from helpers.panel import PanelBase
from helpers.plots import figure_png
from helpers.scaling.sweep import FLASK_MAX, SIZES, sweep, sweep_figure, table


class ScalingExplorer(PanelBase):
    """A slider for the largest number of waiting clients, and a button that sweeps up to it.

    `explorer.run(max_n)` is what the button does, and what a notebook calls from code.
    """

    STAMP = False

    def __init__(self, servers: dict[str, Server], max_n: int = 1_000) -> None:
        super().__init__()
        self.servers = servers
        self.rows: list[dict[str, Any]] = []
        self.slider = widgets.SelectionSlider(
            options=[(f"{n:,}", n) for n in SIZES], value=max_n,
            description="up to N clients", continuous_update=False,
            style={"description_width": "9em"}, layout=widgets.Layout(width="30em"))
        self.button = self._button("Run sweep", "play", self._run_in_background,
                                   style="success")
        self.plot = widgets.Image(format="png", layout=widgets.Layout(width="820px"))
        self.text = widgets.HTML()
        self._thread: threading.Thread | None = None
        self._show(widgets.HBox([self.slider, self.button]), self.status, self.plot, self.text)

    @property
    def box(self) -> widgets.Box:
        """The whole explorer (the same as `widget`)."""
        return self.widget

    def run(self, max_n: int | None = None) -> list[dict[str, Any]]:
        """Sweep every server from 1 client up to `max_n` (default: the slider's value)."""
        max_n = max_n or int(self.slider.value)
        sizes = [n for n in SIZES if n <= max_n]
        started = time.monotonic()
        self.button.disabled = True
        try:
            self.rows = sweep(self.servers, sizes, progress=self.say)
        finally:
            self.button.disabled = False
        self.plot.value = figure_png(sweep_figure(self.rows))
        self.text.value = f"<pre>{table(self.rows)}</pre>"
        self.say(f"done: {len(self.rows)} measurements in {time.monotonic() - started:.0f} s "
                 f"(Flask is swept up to {FLASK_MAX:,} clients at most)")
        return self.rows

    def table(self) -> str:
        """The last sweep as a text table (see `helpers.scaling.table`)."""
        return table(self.rows)

    def _run_in_background(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._run_safely, daemon=True, name="sweep")
        self._thread.start()

    def _run_safely(self) -> None:
        try:
            self.run()
        except Exception as exc:  # noqa: BLE001 - shown in the widget, never printed
            self.say(f"the sweep stopped: {type(exc).__name__}: {exc}")
