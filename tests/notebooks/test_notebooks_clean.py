"""Notebooks are committed clean: no outputs, no execution counts, no widget state."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/ has no .ipynb files"


def test_no_untitled_notebooks() -> None:
    assert not [nb.name for nb in NOTEBOOKS if nb.name.lower().startswith("untitled")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    notebook = json.loads(path.read_text())
    dirty = [
        index
        for index, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them before committing"
    assert "widgets" not in notebook.get("metadata", {}), f"{path.name} carries widget state"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_with_an_environment_check(path: Path) -> None:
    cells = json.loads(path.read_text())["cells"]
    assert cells[0]["cell_type"] == "markdown", f"{path.name} should open with a few sentences"
    first_code = next(c for c in cells if c["cell_type"] == "code")
    assert "check_environment()" in "".join(first_code["source"])


def test_every_notebook_is_linked_from_start_here() -> None:
    start = next((nb for nb in NOTEBOOKS if nb.name == "00_start_here.ipynb"), None)
    assert start is not None, "notebooks/00_start_here.ipynb, the index, is missing"
    markdown = "".join("".join(cell["source"]) for cell in json.loads(start.read_text())["cells"]
                       if cell["cell_type"] == "markdown")
    linked = set(re.findall(r"\]\(\s*(?:\./)?([^)\s]+\.ipynb)\s*\)", markdown))
    missing = [nb.name for nb in NOTEBOOKS if nb != start and nb.name not in linked]
    assert not missing, f"00_start_here.ipynb has no [title](name.ipynb) link to {missing}"
