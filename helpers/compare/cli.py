"""Every strategy side by side, outside Jupyter: the same lanes, table and plots as notebook 04.

    python -m helpers.compare                                  # all four lanes, 20 s
    python -m helpers.compare --preset "chat burst" --duration 60
    python -m helpers.compare --lanes short,asyncio --clients 50 --rate 2 --out results/mine

It prints the table to the terminal (a progress bar goes to stderr while it runs) and writes
`results.json` and `report.png` to `--out`. It exits with status 1, naming the lane, if any lane
lost or duplicated an event. The engine is `helpers.lanes`; the tables and figures below are
also what the notebook's panel (`helpers.compare_panel`) shows.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal, TextIO

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from helpers.compare.comparison import (
    LANES,
    PRESETS,
    RATE_WINDOW_S,
    Comparison,
    Scenario,
    find_preset,
    parse_lanes,
)
from helpers.metrics import percentile
from helpers.plots import figure_png

# --- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column of the comparison table: where its number comes from and which way is best."""

    header: str
    read: Callable[[dict[str, Any]], float | None]
    kind: Literal["rate", "ratio", "pct", "ms", "int", "mb"]  # how to format it
    best: Literal["low", "high"] = "low"  # which end gets highlighted
    hint: str = ""
    from_stats: bool = False  # read from GET /stats, which a busy single-threaded server delays


def _between_polls(row: dict[str, Any], column: Column) -> bool:
    """True for /stats numbers of a single-threaded server: it answers only between polls."""
    return column.from_stats and row.get("threaded") is False


def _get(*path: str) -> Callable[[dict[str, Any]], float | None]:
    def read(row: dict[str, Any]) -> float | None:
        value: Any = row
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return float(value) if isinstance(value, (int, float)) else None
    return read


COLUMNS: list[Column] = [
    Column("req/s", _get("requests_per_s"), "rate",
           hint="requests per second from all of this lane's clients, while events were "
                "triggered"),
    Column("req/event", _get("requests_per_event"), "ratio",
           hint="requests sent per event delivered to a client"),
    Column("empty %", _get("empty_pct"), "pct",
           hint="responses with no event: 200 [] for short polls, 204 for long polls"),
    Column("p50 ms", _get("latency_ms", "p50"), "ms",
           hint="median latency: receive time minus the moment of the shared trigger"),
    Column("p95 ms", _get("latency_ms", "p95"), "ms", hint="95th percentile latency"),
    Column("p99 ms", _get("latency_ms", "p99"), "ms", hint="99th percentile latency"),
    Column("delivered %", _get("delivered_pct"), "pct", best="high",
           hint="deliveries / (events triggered x clients): what never arrived is missing here"),
    Column("pub lag p95", _get("publish_lag_ms", "p95"), "ms",
           hint="ms from the trigger to the server's own timestamp on the event"),
    Column("srv CPU %", _get("server_cpu_pct"), "pct",
           hint="the server process's CPU time over the run, % of one core"),
    Column("threads", _get("server_threads_max"), "int",
           hint="server threads, the most seen while clients ran (GET /stats, twice a second)",
           from_stats=True),
    Column("RSS MB", lambda r: (r["server_rss_bytes_max"] / 1e6
                                if isinstance(r.get("server_rss_bytes_max"), (int, float))
                                else None),
           "mb", hint="server resident memory, the most seen while clients ran (GET /stats)",
           from_stats=True),
    Column("held", _get("server_waiting_max"), "int",
           hint="long polls held by the server at once, the most seen while clients ran",
           from_stats=True),
]


def _cell(row: dict[str, Any], column: Column) -> str:
    text = _fmt(column.read(row), column.kind)
    return text + "†" if _between_polls(row, column) and text != "–" else text


def _fmt(value: float | None, kind: str) -> str:
    if value is None or math.isnan(value) or math.isinf(value):
        return "–"
    if kind == "ms":
        return f"{value:.1f}" if value < 10 else f"{value:,.0f}"
    if kind == "ratio":
        return f"{value:.2f}" if value < 10 else f"{value:,.1f}"
    if kind in ("pct", "rate", "mb"):
        return f"{value:.1f}" if value < 100 else f"{value:,.0f}"
    return f"{value:,.0f}"


def best_cells(rows: Sequence[dict[str, Any]]) -> dict[str, set[str]]:
    """For each column header, the lanes holding its best value (ties all win)."""
    best: dict[str, set[str]] = {}
    for column in COLUMNS:
        values = [(row["lane"], column.read(row)) for row in rows
                  if not _between_polls(row, column)]
        finite = [(lane, v) for lane, v in values
                  if v is not None and not math.isnan(v) and not math.isinf(v)]
        if len(finite) < 2:
            best[column.header] = set()
            continue
        pick = max if column.best == "high" else min
        winner = _fmt(pick(v for _, v in finite), column.kind)
        best[column.header] = {lane for lane, v in finite if _fmt(v, column.kind) == winner}
    return best


def describe(scenario: Scenario) -> str:
    """The scenario in one line, with units."""
    return (f"{scenario.clients:,} client{'s' if scenario.clients != 1 else ''} per lane, "
            f"{scenario.rate:g} events/s, short polls every {scenario.interval:g} s, long polls "
            f"held up to {scenario.hold:g} s, naive check every {scenario.check_interval:g} s")


def notes(results: dict[str, Any]) -> list[str]:
    """The lines under the table: publish skew, load generator, and every lane's problems."""
    lines = []
    skew = results["publish_skew_ms"]
    concurrent, everyone = skew["concurrent"], skew["all"]
    if concurrent["events"]:
        lines.append(
            f"Publish skew (max − min of the servers' own timestamps for one event): "
            f"p50 {_fmt(concurrent['p50'], 'ms')} ms, p95 {_fmt(concurrent['p95'], 'ms')} ms "
            f"across {', '.join(concurrent['lanes'])} ({concurrent['events']} events)"
            + (f"; {_fmt(everyone['p50'], 'ms')} ms p50 with every lane"
               if everyone["lanes"] != concurrent["lanes"] and everyone["events"] else "")
            + ".")
    cpu, peak = results.get("kernel_cpu_pct"), results.get("kernel_cpu_peak_pct")
    if cpu is not None:
        lines.append(
            f"Load generator (this process: clients, publishers, views): {_fmt(cpu, 'pct')} % "
            f"of one core over {results['total_seconds']:.1f} s"
            + (f", at most {_fmt(peak, 'pct')} % over any {RATE_WINDOW_S:g} s" if peak else "")
            + (" — near a full core, so latencies include time the clients waited for this "
               "process." if max(cpu, peak or 0) > 80 else "."))
    single = [row["lane"] for row in results["lanes"] if row.get("threaded") is False]
    if single:
        lines.append(f"† {', '.join(single)}: threads, RSS and held are read only between "
                     "polls, because a single-threaded server cannot answer /stats while it "
                     "holds one; they are not ranked.")
    for row in results["lanes"]:
        problems = []
        if row["lost"]:
            problems.append(f"LOST or duplicated events: {row['missing']} missing, "
                            f"{row['duplicates']} duplicated, {row['gaps_reported']} gone (410)")
        if row["errors"]:
            problems.append(f"{row['errors']:,} client errors (last: {row['last_error']})")
        unpublished = row["dropped"] + row["publish_errors"]
        if unpublished:
            problems.append(f"{unpublished:,} of {row['triggered']:,} events never published "
                            f"on its server")
        age = row.get("stats_age_s")
        if age is not None and age > 2:
            problems.append(f"its /stats answer is {age:.0f} s old (the server was busy)")
        if problems:
            lines.append(f"{row['lane']}: " + "; ".join(problems) + ".")
    return lines


def table_text(results: dict[str, Any]) -> str:
    """The table as plain text for a terminal; * marks the best value of each column."""
    rows = results["lanes"]
    best = best_cells(rows)
    header = ["lane"] + [c.header for c in COLUMNS]
    body = [[row["lane"]] + [_cell(row, c) + ("*" if row["lane"] in best[c.header] else " ")
                             for c in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    widths[1:] = [max(w, len(h) + 1) for w, h in zip(widths[1:], header[1:], strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join([cells[0].ljust(widths[0])]
                         + [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)])

    out = [summary_line(results) + " Latency: receive time minus the shared trigger moment. "
           "Threads, RSS and held: the most seen while clients ran. * = best.",
           line([h if i == 0 else h + " " for i, h in enumerate(header)]),
           line(["-" * w for w in widths]), *[line(b) for b in body], ""]
    out += notes(results)
    return "\n".join(out)


BEST_STYLE = ";background:#c8f0c8;font-weight:bold"


def summary_line(results: dict[str, Any]) -> str:
    """What was measured, in one sentence: scenario, events, duration."""
    settle = results.get("settle_seconds") or 0.0
    waited = f", then {settle:.1f} s for the last deliveries" if settle >= 0.05 else ""
    return (f"{describe(Scenario(**results['scenario']))}; {results['triggered']:,} events "
            f"triggered over {results['seconds']:.1f} s{waited}.")


def table_html(results: dict[str, Any]) -> str:
    """The table as HTML for a widgets.HTML; the best value of each column is highlighted."""
    rows = results["lanes"]
    best = best_cells(rows)
    cell = "padding:2px 8px;text-align:right;border-bottom:1px solid #ddd"
    head = "".join(f"<th style='{cell}' title='{html.escape(c.hint)}'>{html.escape(c.header)}"
                   "</th>" for c in COLUMNS)
    lines = []
    for row in rows:
        color = LANES[row["lane"]].color.replace("tab:", "")
        cells = "".join(
            f"<td style='{cell}{BEST_STYLE if row['lane'] in best[c.header] else ''}'>"
            f"{_cell(row, c)}</td>" for c in COLUMNS)
        lines.append(f"<tr><td style='{cell};text-align:left' title='{html.escape(row['title'])}'>"
                     f"<span style='color:{color}'>&#9632;</span> <b>{row['lane']}</b></td>"
                     f"{cells}</tr>")
    caption = (html.escape(summary_line(results)) + " Latency = receive time − shared trigger "
               "moment; threads, RSS and held = the most seen while clients ran. Green = best "
               "in its column; hover a header for its meaning.")
    foot = "".join(f"<div style='font-size:90%'>{html.escape(n)}</div>" for n in notes(results))
    return (f"<div style='font-size:90%;color:#444;margin-bottom:4px'>{caption}</div>"
            f"<table style='border-collapse:collapse;font-variant-numeric:tabular-nums'>"
            f"<tr><th style='{cell};text-align:left'>lane</th>{head}</tr>{''.join(lines)}"
            f"</table><div style='margin-top:4px'>{foot}</div>")


# --- the plots -----------------------------------------------------------------------------


def latency_axes(ax: Axes, lab: Comparison) -> None:
    """Each delivery as a faint dot, and each lane's median per second as a line (log scale)."""
    drawn = False
    for name, points in lab.latency_points().items():
        if not points:
            continue
        color = LANES[name].color
        if len(points) > 4000:  # keep the drawing quick; the line below uses every point
            points_shown = points[:: len(points) // 4000 + 1]
        else:
            points_shown = points
        ax.scatter([t for t, _ in points_shown], [max(ms, 0.1) for _, ms in points_shown],
                   s=5, alpha=0.25, color=color, linewidths=0)
        bins: dict[int, list[float]] = {}
        for t, ms in points:
            bins.setdefault(int(t), []).append(ms)
        xs: list[float] = []
        ys: list[float] = []
        for second in sorted(bins):
            if xs and second - xs[-1] > 1.5:  # no delivery for a while: break the line
                xs.append(math.nan)
                ys.append(math.nan)
            values = sorted(bins[second])
            xs.append(second + 0.5)
            ys.append(max(values[len(values) // 2], 0.1))
        ax.plot(xs, ys, color=color, marker="o", markersize=3, linewidth=1.5,
                linestyle=LANES[name].linestyle, label=name)
        drawn = True
    ax.set_yscale("log")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("latency from trigger (ms)")
    ax.set_title("Latency of each delivery (dots) and median per second (lines)", fontsize=10)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(loc="upper left", fontsize=8)


def rate_axes(ax: Axes, lab: Comparison) -> None:
    """Requests per second of each lane over time, and this process's CPU on a second axis."""
    timeline = list(lab.timeline)
    ts = [point["t"] for point in timeline]
    for name in lab.lanes:
        ax.plot(ts, [point["requests_per_s"].get(name, 0) for point in timeline],
                color=LANES[name].color, linestyle=LANES[name].linestyle, linewidth=1.8,
                label=name)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("requests / s")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    cpu_ax = ax.twinx()
    cpu_ax.plot(ts, [point["kernel_cpu_pct"] for point in timeline], color="0.45",
                linestyle=":", linewidth=1.2, label="load generator CPU")
    cpu_ax.set_ylabel("load generator CPU (% of a core)", color="0.35", fontsize=8)
    cpu_ax.set_ylim(0, max([100.0] + [p["kernel_cpu_pct"] for p in timeline]) * 1.05)
    cpu_ax.tick_params(labelsize=8, colors="0.35")
    ax.set_title("Requests per second, and the clients' own CPU (grey dots, right axis)",
                 fontsize=10)
    if timeline:
        ax.legend(loc="upper left", fontsize=8)


def distribution_axes(ax: Axes, lab: Comparison) -> None:
    """One box per lane: median, quartiles, whiskers at p5 and p95 (log scale)."""
    points = lab.latency_points()
    names = list(lab.lanes)[::-1]  # first lane on top
    shown = [ms for n in names for _, ms in points[n]]
    for y, name in enumerate(names, start=1):
        values = sorted(max(ms, 0.1) for _, ms in points[name])
        if not values:
            ax.text(0.02, y, "no event delivered", transform=ax.get_yaxis_transform(),
                    va="center", fontsize=9, color=LANES[name].color)
            continue
        p5, p25, p50, p75, p95 = (percentile(values, q) for q in (5, 25, 50, 75, 95))
        color = LANES[name].color
        ax.hlines(y, p5, p95, color=color, linewidth=1.2)
        ax.vlines([p5, p95], y - 0.15, y + 0.15, color=color, linewidth=1.2)
        ax.barh(y, p75 - p25, left=p25, height=0.5, color=color, alpha=0.5,
                edgecolor=color)
        ax.vlines(p50, y - 0.25, y + 0.25, color="black", linewidth=2)
        ax.annotate(f"p50 {_fmt(p50, 'ms')} ms", (p50, y + 0.3), fontsize=8, ha="center")
    ax.set_yticks(range(1, len(names) + 1), names)
    ax.set_ylim(0.4, len(names) + 0.7)
    if not shown:
        ax.set_xlim(1, 10_000)
    ax.set_xscale("log")
    ax.set_xlabel("latency from trigger (ms, log scale)")
    ax.set_title("Latency distribution per lane (box: p25–p75, whiskers: p5–p95)",
                 fontsize=10)
    ax.grid(alpha=0.3, axis="x")


# Fixed margins rather than layout="constrained": the live figure is redrawn every two seconds,
# and the constrained layout engine would double the CPU time each redraw takes.
def live_figure(lab: Comparison) -> Figure:
    """Latency over time and requests per second, side by side: what the panel redraws."""
    fig = Figure(figsize=(11, 3.3), dpi=90)
    fig.subplots_adjust(left=0.065, right=0.935, bottom=0.15, top=0.9, wspace=0.3)
    left, right = fig.subplots(1, 2)
    latency_axes(left, lab)
    rate_axes(right, lab)
    return fig


def distribution_figure(lab: Comparison) -> Figure:
    """The latency distribution per lane: what the panel draws when a run ends."""
    height = 0.9 + 0.55 * len(lab.lanes)
    fig = Figure(figsize=(11, height), dpi=90)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.5 / height, top=1 - 0.3 / height)
    distribution_axes(fig.add_subplot(), lab)
    return fig


def report_figure(lab: Comparison) -> Figure:
    """All three plots stacked, with the scenario as the title: the CLI's report.png."""
    fig = Figure(figsize=(11, 10), dpi=90, layout="constrained")
    top, middle, bottom = fig.subplots(3, 1, height_ratios=[1.2, 1, 0.9])
    latency_axes(top, lab)
    rate_axes(middle, lab)
    distribution_axes(bottom, lab)
    fig.suptitle(f"Polling strategies side by side — {describe(lab.scenario)}", fontsize=10)
    return fig


# --- the command line ----------------------------------------------------------------------


class ProgressBar:
    """A plain-text progress bar: redrawn in place on a terminal, a line per 10 % otherwise."""

    def __init__(self, seconds: float, lab: Comparison, stream: TextIO = sys.stderr,
                 width: int = 30) -> None:
        self.seconds, self.lab, self.stream, self.width = seconds, lab, stream, width
        self.tty = stream.isatty()
        self._shown = -1

    def __call__(self, fraction: float) -> None:
        step = int(fraction * 10)
        if not self.tty and step == self._shown:
            return
        self._shown = step
        filled = int(fraction * self.width)
        cpu = self.lab.recent_kernel_cpu_pct()
        text = (f"[{'#' * filled}{'.' * (self.width - filled)}] "
                f"{fraction * self.seconds:5.1f}/{self.seconds:g} s  "
                f"{self.lab.triggered:,} events triggered  load generator "
                f"{_fmt(cpu, 'pct')} % of a core")
        if self.tty:
            self.stream.write("\r" + text + ("\n" if fraction >= 1 else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def write_results(lab: Comparison, results: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write results.json and report.png into `out` (created if needed); return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / "results.json", out / "report.png"
    json_path.write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    png_path.write_bytes(figure_png(report_figure(lab)))
    return json_path, png_path


def lost_lines(results: dict[str, Any]) -> list[str]:
    """One line per lane that lost or duplicated an event (empty when none did)."""
    return [f"FAIL: lane {row['lane']} lost or duplicated events: {row['missing']} missing, "
            f"{row['duplicates']} duplicated, {row['gaps_reported']} gone (410)."
            for row in results["lanes"] if row["lost"]]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    presets = ", ".join(f'"{name}"' for name in PRESETS)
    p = argparse.ArgumentParser(
        prog="python -m helpers.compare",
        description="Run every polling strategy side by side against the same events, print "
                    "the comparison table, and write results.json and report.png.")
    p.add_argument("--lanes", default=",".join(LANES),
                   help=f"comma list of {', '.join(LANES)} (default: all)")
    p.add_argument("--preset", help=f"start from a preset scenario: {presets}")
    p.add_argument("--clients", type=int, help="simulated clients per lane, 1-1000")
    p.add_argument("--rate", type=float, help="events per second, 0-50")
    p.add_argument("--duration", type=float, default=20.0, help="seconds to measure (20)")
    p.add_argument("--interval", type=float, help="short-poll interval, seconds")
    p.add_argument("--hold", type=float, help="long-poll hold, seconds")
    p.add_argument("--check-interval", type=float, help="the naive servers' check interval, s")
    p.add_argument("--out", type=Path,
                   help="folder for results.json and report.png "
                        "(default: results/compare-<timestamp>)")
    args = p.parse_args(argv)
    try:
        args.lanes = parse_lanes(args.lanes)
        base = find_preset(args.preset).scenario if args.preset else Scenario()
        changes = {k: getattr(args, k) for k in asdict(base) if getattr(args, k) is not None}
        args.scenario = replace(base, **changes)
    except ValueError as exc:
        p.error(str(exc))
    if args.duration <= 0:
        p.error("--duration must be a positive number of seconds")
    if args.out is None:
        args.out = Path("results") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison; return 0, or 1 if a lane lost or duplicated an event."""
    args = parse_args(argv)
    # `kill` (SIGTERM) unwinds like Ctrl-C, so the servers are stopped on the way out.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        print(f"Comparing {', '.join(args.lanes)} for {args.duration:g} s: "
              f"{describe(args.scenario)}.", flush=True)
        with Comparison(args.lanes, args.scenario) as lab:
            results = lab.run(args.duration, progress=ProgressBar(args.duration, lab))
            results["command"] = ["python", "-m", "helpers.compare",
                                  *(sys.argv[1:] if argv is None else argv)]
            json_path, png_path = write_results(lab, results, args.out)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print()
    print(table_text(results))
    print(f"\nWrote {json_path} and {png_path}.")
    failures = lost_lines(results)
    for line in failures:
        print(line)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
