"""tests/notebooks/solve.py: solutions run against their own checks under `make test`."""

from __future__ import annotations

from typing import Any

import pytest
from solve import ASSERT, solved


def cell(kind: str, source: str, *tags: str) -> dict[str, Any]:
    return {"cell_type": kind, "metadata": {"tags": list(tags)} if tags else {},
            "source": source}


def solution(code: str) -> dict[str, Any]:
    return cell("markdown", f"<details><summary>Solution</summary>\n\n```python\n{code}```\n\n"
                            "</details>", "solution")


def sources(notebook: dict[str, Any]) -> list[str]:
    return [c["source"] for c in notebook["cells"]]


def test_each_solution_runs_just_before_its_check_and_the_check_must_pass() -> None:
    notebook = {"cells": [cell("code", "guess = None"), cell("code", "measured = 3"),
                          cell("code", "passed = check(guess == measured)", "check"),
                          solution("guess = 3\n"), cell("code", "later()")]}
    assert sources(solved(notebook)) == [
        "guess = None", "measured = 3", "guess = 3\n", "passed = check(guess == measured)",
        ASSERT, notebook["cells"][3]["source"], "later()"]


def test_the_learners_notebook_is_left_as_it_was() -> None:
    notebook = {"cells": [cell("code", "passed = check(False)", "check"), solution("x = 1\n")]}
    solved(notebook)
    assert len(notebook["cells"]) == 2


@pytest.mark.parametrize("cells", [
    [solution("x = 1\n")],  # no check before it
    [cell("code", "passed = check(x)", "check")],  # a check nobody solves
    [cell("code", "c1", "check"), cell("code", "c2", "check"), solution("x\n")],
    [cell("code", "c", "check"), cell("markdown", "no code block", "solution")],
])
def test_a_solution_and_its_check_come_in_pairs(cells: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError):
        solved({"cells": cells})
