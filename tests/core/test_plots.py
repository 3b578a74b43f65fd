"""helpers/plots.py: figures drawn without pyplot's global state, rendered to PNG bytes."""

from __future__ import annotations

import threading

from matplotlib.figure import Figure

from helpers.plots import figure_png, latency_figure

PNG = b"\x89PNG\r\n\x1a\n"


def test_a_latency_figure_renders_to_png() -> None:
    fig = latency_figure([(100.5, 12.0), (101.0, 480.0)], 100.0, reference_ms=500,
                         reference_label="half the poll interval")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "seconds since start" and ax.get_ylabel() == "latency (ms)"
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {
        "half the poll interval", "one delivered event"}
    assert figure_png(fig).startswith(PNG)


def test_an_empty_figure_renders_too() -> None:
    fig = latency_figure([], 0.0)
    assert fig.axes[0].get_legend() is None
    assert figure_png(fig).startswith(PNG)


def test_figures_can_be_drawn_from_threads_at_once() -> None:
    pngs: list[bytes] = []

    def draw() -> None:
        pngs.append(figure_png(latency_figure([(1.0, 5.0)], 0.0, reference_ms=10)))

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(pngs) == 4 and all(png.startswith(PNG) for png in pngs)
