"""The results of `make bench`, read back for notebook 05: `latest_bench()`.

`make bench` writes each run twice: `results/bench-<date>.json` (every figure) and, beside it,
`bench-<date>.md` (the same run as markdown tables). Both are read here as files, so the lesson
does not depend on the benchmark's code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers.launcher import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "results"


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
        """The run's tables, as `make bench` wrote them beside the JSON (bench-<date>.md)."""
        tables = self.path.with_suffix(".md")
        try:
            return tables.read_text()
        except OSError:
            return (f"# Polling Lab benchmark\n\nThe tables of this run ({tables.name}) are "
                    f"missing; print them again with `.venv/bin/python -m bench.report "
                    f"{self.path}`.\n")

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
