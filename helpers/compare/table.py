"""The comparison table, as plain text for a terminal and as HTML for the panel.

Every column reads one named field of a `LaneResult`; the best value of each column is marked
(`*` in text, green in HTML), and the lines under the table name every lane's problems.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from helpers.compare.results import ComparisonResult, LaneResult
from helpers.compare.spec import LANES
from helpers.compare.timeline import RATE_WINDOW_S


@dataclass(frozen=True)
class Column:
    """One column of the comparison table: where its number comes from and which way is best."""

    header: str
    read: Callable[[LaneResult], float | None]
    kind: Literal["rate", "ratio", "pct", "ms", "int", "mb"]  # how to format it
    best: Literal["low", "high"] = "low"  # which end gets highlighted
    hint: str = ""
    from_stats: bool = False  # read from GET /stats, which a busy single-threaded server delays

    def between_polls(self, row: LaneResult) -> bool:
        """True for /stats numbers of a single-threaded server: it answers only between polls."""
        return self.from_stats and row.threaded is False

    def cell(self, row: LaneResult) -> str:
        """`row`'s value, formatted; † marks a number read only between polls."""
        text = fmt(self.read(row), self.kind)
        return text + "†" if self.between_polls(row) and text != "–" else text


def _megabytes(value: int | None) -> float | None:
    return None if value is None else value / 1e6


COLUMNS: list[Column] = [
    Column("req/s", lambda r: r.requests_per_s, "rate",
           hint="requests per second from all of this lane's clients, while events were "
                "triggered"),
    Column("req/event", lambda r: r.requests_per_event, "ratio",
           hint="requests sent per event delivered to a client"),
    Column("empty %", lambda r: r.empty_pct, "pct",
           hint="responses with no event: 200 [] for short polls, 204 for long polls"),
    Column("p50 ms", lambda r: r.latency_ms.p50, "ms",
           hint="median latency: receive time minus the moment of the shared trigger"),
    Column("p95 ms", lambda r: r.latency_ms.p95, "ms", hint="95th percentile latency"),
    Column("p99 ms", lambda r: r.latency_ms.p99, "ms", hint="99th percentile latency"),
    Column("delivered %", lambda r: r.delivered_pct, "pct", best="high",
           hint="deliveries / (events triggered x clients): what never arrived is missing here"),
    Column("pub lag p95", lambda r: r.publish_lag_ms.p95, "ms",
           hint="ms from the trigger to the server's own timestamp on the event"),
    Column("srv CPU %", lambda r: r.server_cpu_pct, "pct",
           hint="the server process's CPU time over the run, % of one core"),
    Column("threads", lambda r: r.server_threads_max, "int",
           hint="server threads, the most seen while clients ran (GET /stats, twice a second)",
           from_stats=True),
    Column("RSS MB", lambda r: _megabytes(r.server_rss_bytes_max), "mb",
           hint="server resident memory, the most seen while clients ran (GET /stats)",
           from_stats=True),
    Column("held", lambda r: r.server_waiting_max, "int",
           hint="long polls held by the server at once, the most seen while clients ran",
           from_stats=True),
]


def fmt(value: float | None, kind: str) -> str:
    """A number as the table shows it: `kind` is ms, ratio, pct, rate, mb or int; – for none."""
    if value is None or math.isnan(value) or math.isinf(value):
        return "–"
    if kind == "ms":
        return f"{value:.1f}" if value < 10 else f"{value:,.0f}"
    if kind == "ratio":
        return f"{value:.2f}" if value < 10 else f"{value:,.1f}"
    if kind in ("pct", "rate", "mb"):
        return f"{value:.1f}" if value < 100 else f"{value:,.0f}"
    return f"{value:,.0f}"


def best_cells(rows: Sequence[LaneResult]) -> dict[str, set[str]]:
    """For each column header, the lanes holding its best value (ties all win)."""
    best: dict[str, set[str]] = {}
    for column in COLUMNS:
        values = [(row.lane, column.read(row)) for row in rows if not column.between_polls(row)]
        finite = [(lane, v) for lane, v in values
                  if v is not None and not math.isnan(v) and not math.isinf(v)]
        if len(finite) < 2:
            best[column.header] = set()
            continue
        pick = max if column.best == "high" else min
        winner = fmt(pick(v for _, v in finite), column.kind)
        best[column.header] = {lane for lane, v in finite if fmt(v, column.kind) == winner}
    return best


def notes(results: ComparisonResult) -> list[str]:
    """The lines under the table: publish skew, load generator, and every lane's problems."""
    lines = []
    concurrent, everyone = results.publish_skew_ms.concurrent, results.publish_skew_ms.all
    if concurrent.events:
        lines.append(
            f"Publish skew (max − min of the servers' own timestamps for one event): "
            f"p50 {fmt(concurrent.p50, 'ms')} ms, p95 {fmt(concurrent.p95, 'ms')} ms "
            f"across {', '.join(concurrent.lanes)} ({concurrent.events} events)"
            + (f"; {fmt(everyone.p50, 'ms')} ms p50 with every lane"
               if everyone.lanes != concurrent.lanes and everyone.events else "")
            + ".")
    cpu, peak = results.kernel_cpu_pct, results.kernel_cpu_peak_pct
    if math.isfinite(cpu):
        peak_seen = math.isfinite(peak) and peak > 0
        lines.append(
            "Load generator (this process and its swarm's: clients, publishers, views): "
            f"{fmt(cpu, 'pct')} % "
            f"of one core over {results.total_seconds:.1f} s"
            + (f", at most {fmt(peak, 'pct')} % over any {RATE_WINDOW_S:g} s" if peak_seen
               else "")
            + (" — near a full core, so latencies include time the clients waited for this "
               "process." if max(cpu, peak if peak_seen else 0) > 80 else "."))
    single = [row.lane for row in results.lanes if row.threaded is False]
    if single:
        lines.append(f"† {', '.join(single)}: threads, RSS and held are read only between "
                     "polls, because a single-threaded server cannot answer /stats while it "
                     "holds one; they are not ranked.")
    for row in results.lanes:
        problems = []
        if row.lost:
            problems.append(f"LOST or duplicated events: {row.missing} missing, "
                            f"{row.duplicates} duplicated, {row.gaps_reported} gone (410)")
        if row.errors:
            problems.append(f"{row.errors:,} client errors (last: {row.last_error})")
        unpublished = row.dropped + row.publish_errors
        if unpublished:
            problems.append(f"{unpublished:,} of {row.triggered:,} events never published "
                            f"on its server")
        if row.stats_age_s is not None and row.stats_age_s > 2:
            problems.append(f"its /stats answer is {row.stats_age_s:.0f} s old (the server was "
                            "busy)")
        if problems:
            lines.append(f"{row.lane}: " + "; ".join(problems) + ".")
    return lines


def summary_line(results: ComparisonResult) -> str:
    """What was measured, in one sentence: scenario, events, duration."""
    settle = results.settle_seconds if math.isfinite(results.settle_seconds) else 0.0
    waited = f", then {settle:.1f} s for the last deliveries" if settle >= 0.05 else ""
    return (f"{results.scenario.describe()}; {results.triggered:,} events "
            f"triggered over {results.seconds:.1f} s{waited}.")


def table_text(results: ComparisonResult) -> str:
    """The table as plain text for a terminal; * marks the best value of each column."""
    rows = results.lanes
    best = best_cells(rows)
    header = ["lane"] + [c.header for c in COLUMNS]
    body = [[row.lane] + [c.cell(row) + ("*" if row.lane in best[c.header] else " ")
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


def table_html(results: ComparisonResult) -> str:
    """The table as HTML for a widgets.HTML; the best value of each column is highlighted."""
    rows = results.lanes
    best = best_cells(rows)
    cell = "padding:2px 8px;text-align:right;border-bottom:1px solid #ddd"
    head = "".join(f"<th style='{cell}' title='{html.escape(c.hint)}'>{html.escape(c.header)}"
                   "</th>" for c in COLUMNS)
    lines = []
    for row in rows:
        color = LANES[row.lane].color.replace("tab:", "")
        cells = "".join(
            f"<td style='{cell}{BEST_STYLE if row.lane in best[c.header] else ''}'>"
            f"{c.cell(row)}</td>" for c in COLUMNS)
        lines.append(f"<tr><td style='{cell};text-align:left' title='{html.escape(row.title)}'>"
                     f"<span style='color:{color}'>&#9632;</span> <b>{row.lane}</b></td>"
                     f"{cells}</tr>")
    caption = (html.escape(summary_line(results)) + " Latency = receive time − shared trigger "
               "moment; threads, RSS and held = the most seen while clients ran. Green = best "
               "in its column; hover a header for its meaning.")
    foot = "".join(f"<div style='font-size:90%'>{html.escape(n)}</div>" for n in notes(results))
    return (f"<div style='font-size:90%;color:#444;margin-bottom:4px'>{caption}</div>"
            f"<table style='border-collapse:collapse;font-variant-numeric:tabular-nums'>"
            f"<tr><th style='{cell};text-align:left'>lane</th>{head}</tr>{''.join(lines)}"
            f"</table><div style='margin-top:4px'>{foot}</div>")
