"""Notebook 05's engine: many waiting clients, sweeps, a profile of one fan-out, bench results.

    limit = open_file_limit()                     # before launching servers: they inherit it
    rows = sweep({"asyncio": a, "flask": f}, [1, 10, 100, 1000])
    profile = profile_fan_out(2000)
    ScalingExplorer({"asyncio": a, "flask": f})   # a slider and a button for the same sweep

One module per job:

* the load client itself is `helpers.loadclient`, which the swarm shares (raw asyncio, one
  TCP connection per waiting client, hand-written HTTP/1.1);
* `peers`: a server under measurement (`KitPeer` wraps a launched one);
* `fanout`: one fan-out measured (hold N polls, publish, time every answer);
* `sweep`: the notebook's synchronous calls, `fan_out` and `sweep`, their figure and table;
* `profile` and `profile_server`: where one fan-out spends the asyncio server's CPU;
* `results`: the runs `make bench` wrote, read back as files;
* `explorer`: `ScalingExplorer`, the widget. It is imported on first use (PEP 562), so
  `from helpers.scaling import sweep` does not import ipywidgets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from helpers.scaling.profile import profile_fan_out
from helpers.scaling.results import BenchResults, latest_bench
from helpers.scaling.sweep import (
    FLASK_MAX,
    SIZES,
    fan_out,
    open_file_limit,
    sweep,
    sweep_figure,
    table,
)

if TYPE_CHECKING:
    from helpers.scaling.explorer import ScalingExplorer

__all__ = [
    "BenchResults",
    "FLASK_MAX",
    "SIZES",
    "ScalingExplorer",
    "fan_out",
    "latest_bench",
    "open_file_limit",
    "profile_fan_out",
    "sweep",
    "sweep_figure",
    "table",
]


def __getattr__(name: str) -> Any:
    """Import the widget only when it is asked for (`from helpers.scaling import ...`)."""
    if name == "ScalingExplorer":
        from helpers.scaling.explorer import ScalingExplorer

        return ScalingExplorer
    raise AttributeError(f"module 'helpers.scaling' has no attribute {name!r}")
