"""Many waiting clients from a notebook: one fan-out, a sweep over sizes, its figure and table.

    limit = open_file_limit()                     # before launching servers: they inherit it
    row = fan_out(server, 1_000)
    rows = sweep({"asyncio": a, "flask": f}, [1, 10, 100, 1000])

The waiting clients come from the load client that `make bench` uses too
(`helpers.loadclient`): one TCP connection each, hand-written HTTP, run on an event loop
in a worker thread, so that ten thousand of them fit in one kernel. A fan-out is timed from just
before the publish request is written to the moment each answer's last byte is read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from matplotlib.figure import Figure

from helpers.kinds import kind_of_module
from helpers.launcher import Server, ServerHandle, raise_open_file_limit
from helpers.scaling.fanout import measure_fan_out
from helpers.scaling.peers import KitPeer

T = TypeVar("T")
SIZES = (1, 10, 100, 1_000, 3_000, 10_000)
FLASK_MAX = 3_000  # one thread per waiting client: by then they keep a core busy doing nothing
COLORS = {"asyncio": "tab:blue", "flask": "tab:orange", "nchan": "tab:green"}


def open_file_limit() -> int:
    """Raise this process's open-file limit to the most it may have, and return it.

    Call it before `launch()`: a server inherits the limit of the process that starts it. Each
    waiting client needs one file descriptor here and one in the server.
    """
    return raise_open_file_limit()[0]


def run_on_own_loop(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine `make()` on a fresh event loop in a worker thread; return its result.

    Jupyter's own loop is busy running the kernel, so the load client gets one of its own
    (uvloop's when it is installed, as it is with uvicorn[standard]).
    """
    def main() -> T:
        try:
            import uvloop
        except ImportError:
            return asyncio.run(make())
        return uvloop.run(make())

    with ThreadPoolExecutor(1, thread_name_prefix="scaling") as pool:
        return pool.submit(main).result()


def family(server: ServerHandle) -> str:
    """Which server implementation `server` runs, as the plots colour it: "flask" or "asyncio"."""
    kind = kind_of_module(server.module)
    return kind.family if kind is not None else "asyncio"


def fan_out(server: Server, n: int, *, rounds: int = 1, jitter: float = 0.0) -> dict[str, Any]:
    """Hold `n` long polls on `server`, publish one event, and time every answer.

    Returns `helpers.scaling.fanout.measure_fan_out`'s figures: `delivered`, `p50_ms`,
    `p99_ms`, `max_ms` (median over `rounds`), `rss_idle_kib`, `rss_held_kib`, `kib_per_held`,
    `threads_idle`, `threads_held`, and per round `server_cpu_s` and `all_held_after_s`; plus
    `kind` ("flask" or "asyncio"). Raises ValueError if `n` does not fit under the open-file
    limit.
    """
    limit = open_file_limit()
    if n > limit - 200:
        raise ValueError(f"{n:,} clients need {n:,} open files here and in the server, but the "
                         f"limit is {limit:,}; raise it (ulimit -n) before starting Jupyter, or "
                         "ask for fewer clients.")

    async def measure() -> dict[str, Any]:
        peer = await KitPeer.attach(server)
        try:
            return await measure_fan_out(peer, n, rounds=rounds, jitter=jitter)
        finally:
            await peer.stop()

    result = run_on_own_loop(measure)
    result["kind"] = family(server)
    return result


def sweep(servers: dict[str, Server], sizes: list[int],
          progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """`fan_out` for each server (by name) at each size, smallest first.

    A Flask server is swept up to FLASK_MAX clients, and a server stops growing once it fails
    to deliver to everybody. Each row is `fan_out`'s result plus `server` (the name).
    """
    rows = []
    for name, server in servers.items():
        flask = family(server) == "flask"
        check = server.check_interval or 0.0
        for n in sorted(sizes):
            if flask and n > FLASK_MAX:
                break
            if progress is not None:
                progress(f"{name}: {n:,} waiting clients")
            row = fan_out(server, n, jitter=check)
            row["server"] = name
            rows.append(row)
            if row["delivered"] < n:
                break
    return rows


def sweep_figure(rows: list[dict[str, Any]], title: str = "") -> Figure:
    """Four panels against the number of waiting clients, log axes: fan-out time (max and p99),
    server threads, and resident memory."""
    fig = Figure(figsize=(10, 6.4), dpi=96, layout="constrained")
    axes = fig.subplots(2, 2)
    panels = [
        (axes[0][0], "max_ms", "fan-out: last answer (ms)", True),
        (axes[0][1], "p99_ms", "fan-out: p99 of answers (ms)", True),
        (axes[1][0], "threads_held", "server threads while they wait", True),
        (axes[1][1], "rss_held_kib", "server memory, RSS (MiB)", True),
    ]
    names = list(dict.fromkeys(r["server"] for r in rows))
    for ax, key, label, log in panels:
        for name in names:
            mine = [r for r in rows if r["server"] == name]
            xs = [r["n"] for r in mine]
            ys = [r[key] / 1024 if key.endswith("kib") else r[key] for r in mine]
            color = COLORS.get(mine[0]["kind"], None) if mine else None
            ax.plot(xs, ys, "o-", label=name, color=color)
        ax.set_xscale("log")
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("waiting clients (held long polls)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def table(rows: list[dict[str, Any]]) -> str:
    """The sweep as a fixed-width text table, every figure with its unit."""
    lines = [f"{'server':<26}{'clients':>8}{'delivered':>10}{'p50 ms':>9}{'p99 ms':>9}"
             f"{'max ms':>9}{'threads':>9}{'RSS MiB':>9}{'KiB/client':>11}{'idle CPU %':>11}"]
    for r in rows:
        lines.append(f"{r['server']:<26}{r['n']:>8,}{r['delivered']:>10,}{r['p50_ms']:>9.1f}"
                     f"{r['p99_ms']:>9.1f}{r['max_ms']:>9.1f}{r['threads_held']:>9}"
                     f"{r['rss_held_kib'] / 1024:>9.1f}{r['kib_per_held']:>11.1f}"
                     f"{100 * r['idle_cpu']:>11.1f}")
    return "\n".join(lines)
