"""Every strategy side by side, outside Jupyter: the same lanes, table and plots as notebook 04.

    python -m helpers.compare                                  # all four lanes, 20 s
    python -m helpers.compare --preset "chat burst" --duration 60
    python -m helpers.compare --lanes short,asyncio --clients 50 --rate 2 --out results/mine

It prints the table to the terminal (a progress bar goes to stderr while it runs) and writes
`results.json` and `report.png` to `--out`. It exits with status 1, naming the lane, if any lane
lost or duplicated an event. The engine is `helpers.compare.comparison`; the table and figures
are the ones the notebook's panel shows.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TextIO

from helpers.compare.comparison import Comparison
from helpers.compare.figures import report_figure
from helpers.compare.results import ComparisonResult
from helpers.compare.spec import EVERY_LANE, LANES, PRESETS, Scenario, find_preset, parse_lanes
from helpers.compare.table import fmt, table_text
from helpers.plots import figure_png


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
                f"{fmt(cpu, 'pct')} % of a core")
        if self.tty:
            self.stream.write("\r" + text + ("\n" if fraction >= 1 else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def write_results(results: ComparisonResult, out: Path) -> tuple[Path, Path]:
    """Write results.json and report.png into `out` (created if needed); return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / "results.json", out / "report.png"
    json_path.write_text(json.dumps(results.to_json(), indent=2, allow_nan=False) + "\n")
    png_path.write_bytes(figure_png(report_figure(results)))
    return json_path, png_path


def lost_lines(results: ComparisonResult) -> list[str]:
    """One line per lane that lost or duplicated an event (empty when none did)."""
    return [f"FAIL: lane {row.lane} lost or duplicated events: {row.missing} missing, "
            f"{row.duplicates} duplicated, {row.gaps_reported} gone (410)."
            for row in results.lanes if row.lost]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    presets = ", ".join(f'"{name}"' for name in PRESETS)
    p = argparse.ArgumentParser(
        prog="python -m helpers.compare",
        description="Run every polling strategy side by side against the same events, print "
                    "the comparison table, and write results.json and report.png.")
    p.add_argument("--lanes", default=",".join(LANES),
                   help=f"comma list of {', '.join(EVERY_LANE)} (default: {', '.join(LANES)})")
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
              f"{args.scenario.describe()}.", flush=True)
        with Comparison(args.lanes, args.scenario) as lab:
            results = lab.run(args.duration, progress=ProgressBar(args.duration, lab))
        results = replace(results, command=("python", "-m", "helpers.compare",
                                            *(sys.argv[1:] if argv is None else argv)))
        json_path, png_path = write_results(results, args.out)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print()
    print(table_text(results))
    print(f"\nWrote {json_path} and {png_path}.")
    failures = lost_lines(results)
    for line in failures:
        print(line)
    return 1 if failures else 0

