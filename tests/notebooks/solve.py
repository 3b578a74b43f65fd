"""Write copies of the notebooks with every exercise solved, for `make test` to run under nbval.

A learner's notebook never runs a solution: each one is a collapsed markdown cell tagged
`solution`, so Run All leaves every check saying "not yet". To prove the solutions right, each
copy turns every solution's ```python block into a code cell placed just before the nearest
earlier code cell tagged `check`, and adds `assert passed` after that check. The solution then
runs against its own check, with the notebook's state at that point, exactly as a learner who
typed it would run it.

    python tests/notebooks/solve.py notebooks build/notebooks
"""

from __future__ import annotations

import copy
import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any

FENCE = re.compile(r"```python\n(.*?)```", re.S)
ASSERT = 'assert passed, "the solution in the collapsed cell above does not pass its own check"'


def tags(cell: dict[str, Any]) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def code_cell(source: str) -> dict[str, Any]:
    return {"cell_type": "code", "execution_count": None, "id": uuid.uuid4().hex[:8],
            "metadata": {}, "outputs": [], "source": source}


def solved(notebook: dict[str, Any], name: str = "notebook") -> dict[str, Any]:
    """A copy of `notebook` in which each solution runs before its check, which must pass.

    Raises ValueError when a solution has no check before it, or a check has no solution.
    """
    cells = copy.deepcopy(notebook["cells"])
    out: list[dict[str, Any]] = []
    pending: int | None = None  # index in `out` of a check still waiting for its solution
    for cell in cells:
        if "solution" in tags(cell):
            blocks = FENCE.findall("".join(cell["source"]))
            if pending is None or len(blocks) != 1:
                raise ValueError(f"{name}: a solution cell needs exactly one ```python block "
                                 "and a cell tagged 'check' before it")
            out.insert(pending, code_cell(blocks[0]))
            out.insert(pending + 2, code_cell(ASSERT))
            pending = None
        if "check" in tags(cell):
            if pending is not None:
                raise ValueError(f"{name}: a check cell has no solution after it")
            pending = len(out)
        out.append(cell)
    if pending is not None:
        raise ValueError(f"{name}: its last check cell has no solution after it")
    return {**notebook, "cells": out}


def main(source: str, target: str) -> None:
    out = Path(target)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.ipynb"):
        stale.unlink()
    for path in sorted(Path(source).glob("*.ipynb")):
        notebook = solved(json.loads(path.read_text()), path.name)
        (out / path.name).write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
