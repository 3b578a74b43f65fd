"""Many waiting clients from a notebook: sweeps, a profile of one fan-out, `make bench` results.

    limit = open_file_limit()                     # before launching servers: they inherit it
    rows = sweep({"asyncio": a, "flask": f}, [1, 10, 100, 1000])
    profile = profile_fan_out(2000)
    ScalingExplorer({"asyncio": a, "flask": f})   # a slider and a button for the same sweep

The waiting clients come from the benchmark's load client (`bench.loadclient`): one TCP
connection each, hand-written HTTP, run on an event loop in a worker thread, so that ten
thousand of them fit in one kernel. A fan-out is timed from just before the publish request is
written to the moment each answer's last byte is read. (`bench` imports `helpers`, so the
functions here import `bench` when they are called.)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import ipywidgets as widgets
from matplotlib.figure import Figure

from helpers.launcher import PROJECT_ROOT, Server, default_log_dir, raise_open_file_limit
from helpers.plots import figure_png

T = TypeVar("T")
RESULTS = PROJECT_ROOT / "results"
SIZES = (1, 10, 100, 1_000, 3_000, 10_000)
FLASK_MAX = 3_000  # one thread per waiting client: by then they keep a core busy doing nothing
COLORS = {"asyncio": "tab:blue", "flask": "tab:orange", "nchan": "tab:green"}


def open_file_limit() -> int:
    """Raise this process's open-file limit to the most it may have, and return it.

    Call it before `launch()`: a server inherits the limit of the process that starts it. Each
    waiting client needs one file descriptor here and one in the server.
    """
    return raise_open_file_limit()[0]


def _run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on a fresh event loop in a worker thread (Jupyter's own loop is busy)."""
    def main() -> T:
        try:
            import uvloop
        except ImportError:
            return asyncio.run(make())
        return uvloop.run(make())

    with ThreadPoolExecutor(1, thread_name_prefix="scaling") as pool:
        return pool.submit(main).result()


def _flavour(server: Server) -> str:
    return "flask" if server.check_interval is not None else "asyncio"


def fan_out(server: Server, n: int, *, rounds: int = 1, jitter: float = 0.0) -> dict[str, Any]:
    """Hold `n` long polls on `server`, publish one event, and time every answer.

    Returns `bench.scenarios.fan_out`'s figures: `delivered`, `p50_ms`, `p99_ms`, `max_ms`
    (median over `rounds`), `rss_idle_kib`, `rss_held_kib`, `kib_per_held`, `threads_idle`,
    `threads_held`, and per round `server_cpu_s` and `all_held_after_s`. Raises ValueError if
    `n` does not fit under the open-file limit.
    """
    limit = open_file_limit()
    if n > limit - 200:
        raise ValueError(f"{n:,} clients need {n:,} open files here and in the server, but the "
                         f"limit is {limit:,}; raise it (ulimit -n) before starting Jupyter, or "
                         "ask for fewer clients.")

    from bench import scenarios
    from bench.peers import KitPeer

    async def measure() -> dict[str, Any]:
        peer = await KitPeer.attach(server)
        try:
            return await scenarios.fan_out(peer, n, rounds=rounds, jitter=jitter)
        finally:
            await peer.stop()

    result = _run(measure)
    result["kind"] = _flavour(server)
    return result


def sweep(servers: dict[str, Server], sizes: list[int],
          progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """`fan_out` for each server (by name) at each size, smallest first.

    A Flask server is swept up to FLASK_MAX clients, and a server stops growing once it fails
    to deliver to everybody. Each row is `fan_out`'s result plus `server` (the name).
    """
    rows = []
    for name, server in servers.items():
        flask = _flavour(server) == "flask"
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


# --- a profile of one fan-out ----------------------------------------------------------------


class _ProfiledServer(Server):
    """`servers.fastapi_server` run by `bench.profile_server`, which measures between signals."""

    def __init__(self, out: Path, **options: Any) -> None:
        super().__init__("asyncio", host="127.0.0.1", port=0, ready_timeout=30.0,
                         log_dir=default_log_dir(), options={**options,
                                                               "profile_out": str(out)})
        self.module = "bench.profile_server"


def profile_fan_out(n: int = 2_000, *, lean: bool = False) -> dict[str, Any]:
    """Where one fan-out to `n` held polls spends the asyncio server's CPU time.

    Two fan-outs on a fresh server: the first measured plainly (user and kernel CPU from the
    OS, garbage-collection time from `gc.callbacks`), the second under cProfile, which splits
    the Python time by package. Returns `cpu` (seconds by category: the kernel, the garbage
    collector, then the Python time shared out in cProfile's proportions), `python_shares`
    (those proportions, which do not depend on the OS's 10 ms CPU-time ticks), the fan-out's
    `max_ms`, and cProfile's `top` functions.
    """
    from bench import scenarios
    from bench.loadclient import ApiCursor, close_all, open_pool
    from bench.peers import KitPeer

    out = Path(tempfile.mkdtemp(prefix="polling-lab-profile-")) / "profile.jsonl"
    server = _ProfiledServer(out, hold=120, lean=lean)
    server._start()
    try:
        async def measure() -> list[dict[str, Any]]:
            peer = await KitPeer.attach(server)
            pool = await open_pool(peer.host, peer.port, n)
            fan_outs = []
            try:
                cursor = peer.cursor()
                for start in (signal.SIGUSR1, signal.SIGRTMIN):
                    futures = [c.send(cursor.poll(120)) for c in pool]
                    await scenarios.wait_for_waiting(peer, n, 60)
                    await asyncio.sleep(0.3)
                    os.kill(server.pid, start)
                    await asyncio.sleep(0.1)
                    started, published = await scenarios.publish_timed(peer, "profiled")
                    replies = await asyncio.wait_for(asyncio.gather(*futures), 60)
                    os.kill(server.pid, signal.SIGUSR2)
                    peer.published(await published)
                    cursor = ApiCursor(peer._last_id)
                    fan_outs.append({"max_ms": 1000 * (max(r.done_at for r in replies)
                                                       - started),
                                     "delivered": sum(r.status == 200 for r in replies)})
                    await asyncio.sleep(0.2)
            finally:
                close_all(pool)
                await peer.stop()
            return fan_outs
        fan_outs = _run(measure)
        deadline = time.monotonic() + 5
        while len(_read_lines(out)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop()
    plain, profiled = _read_lines(out)[:2]
    # The kernel's time (mostly the socket writes) and the collector's are measured directly.
    # The rest, Python in user space, is shared out in cProfile's proportions, leaving out the
    # write calls themselves: cProfile counts the system call inside them, already shown.
    python_s = max(0.0, plain["user_s"] - plain["gc_s"])
    groups = {g: t for g, t in profiled.get("groups_s", {}).items() if g != "socket writes"}
    total = sum(groups.values()) or 1.0
    cpu = {"kernel: socket writes, TCP": plain["system_s"], "garbage collector": plain["gc_s"]}
    cpu.update({group: python_s * seconds / total
                for group, seconds in sorted(groups.items(), key=lambda kv: -kv[1])})
    return {"n": n, "lean": lean, "max_ms": fan_outs[0]["max_ms"],
            "delivered": fan_outs[0]["delivered"], "user_s": plain["user_s"],
            "system_s": plain["system_s"], "gc_s": plain["gc_s"],
            "collections": plain["collections"], "cpu": cpu,
            "python_shares": {group: seconds / total for group, seconds in groups.items()},
            "top": profiled.get("top", [])}


def _read_lines(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return []


# --- results of make bench ---------------------------------------------------------------------


class BenchResults:
    """One `make bench` run, read back from results/bench-<date>.json; shows as its tables."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.results: dict[str, Any] = json.loads(path.read_text())
        self.environment: dict[str, Any] = self.results.get("environment", {})

    def fan_out(self, server: str, n: int) -> dict[str, Any] | None:
        """The fan-out row for `server` ("fastapi", "fastapi --lean", "nchan", ...) at `n`."""
        for row in self.results.get("fanout", []):
            if row["server"] == server and row["n"] == n:
                return dict(row)
        return None

    def markdown(self) -> str:
        from bench.report import markdown

        return markdown(self.results)

    def _repr_markdown_(self) -> str:
        shown = self.path.relative_to(PROJECT_ROOT) if self.path.is_relative_to(
            PROJECT_ROOT) else self.path
        # Two levels down, so the tables sit under the notebook's own headings.
        lines = [f"##{line}" if line.startswith("#") else line
                 for line in self.markdown().splitlines()]
        return f"*From `{shown}`:*\n\n" + "\n".join(lines)


def latest_bench(folder: str | Path | None = None) -> BenchResults | None:
    """The newest run of `make bench` (results/bench-*.json), or None if there is none yet."""
    found = sorted(Path(folder or RESULTS).glob("bench-*.json"))
    return BenchResults(found[-1]) if found else None


# --- the interactive explorer ------------------------------------------------------------------


class ScalingExplorer:
    """A slider for the largest number of waiting clients, and a button that sweeps up to it.

    `explorer.run(max_n)` is what the button does, and what a notebook calls from code.
    """

    def __init__(self, servers: dict[str, Server], max_n: int = 1_000) -> None:
        self.servers = servers
        self.rows: list[dict[str, Any]] = []
        self.slider = widgets.SelectionSlider(
            options=[(f"{n:,}", n) for n in SIZES], value=max_n,
            description="up to N clients", continuous_update=False,
            style={"description_width": "9em"}, layout=widgets.Layout(width="30em"))
        self.button = widgets.Button(description="Run sweep", icon="play", button_style="success")
        self.status = widgets.HTML()
        self.plot = widgets.Image(format="png", layout=widgets.Layout(width="820px"))
        self.text = widgets.HTML()
        self.button.on_click(lambda _: self._run_in_background())
        self._thread: threading.Thread | None = None
        self.box = widgets.VBox([widgets.HBox([self.slider, self.button]), self.status,
                                 self.plot, self.text])

    def run(self, max_n: int | None = None) -> list[dict[str, Any]]:
        """Sweep every server from 1 client up to `max_n` (default: the slider's value)."""
        max_n = max_n or int(self.slider.value)
        sizes = [n for n in SIZES if n <= max_n]
        started = time.monotonic()
        self.button.disabled = True
        try:
            self.rows = sweep(self.servers, sizes, progress=self._say)
        finally:
            self.button.disabled = False
        self.plot.value = figure_png(sweep_figure(self.rows))
        self.text.value = f"<pre>{table(self.rows)}</pre>"
        self._say(f"done: {len(self.rows)} measurements in {time.monotonic() - started:.0f} s "
                  f"(Flask is swept up to {FLASK_MAX:,} clients at most)")
        return self.rows

    def table(self) -> str:
        """The last sweep as a text table (see `table`)."""
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
            self._say(f"the sweep stopped: {type(exc).__name__}: {exc}")

    def _say(self, text: str) -> None:
        self.status.value = f"<span style='color:#555'>{text}</span>"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.box._repr_mimebundle_(**kwargs)
