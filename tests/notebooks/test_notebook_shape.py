"""Every lesson notebook has the shape of a good course (issue 11): objectives and run time
first, then short prose, exercises whose solutions Run All cannot run, a recap, further
reading, a clean-up that leaves panels alive, and links to the previous and next notebooks."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from solve import solved

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
LESSONS = [nb for nb in NOTEBOOKS if not nb.name.startswith("00_")]
MAX_WORDS = 160  # "about 150" words per markdown cell on the lesson path
LINK = re.compile(r"\]\((https?://[^)\s]+)\)")


def cells(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text())["cells"])


def text(cell: dict[str, Any]) -> str:
    return "".join(cell["source"])


def markdown(path: Path) -> list[str]:
    return [text(c) for c in cells(path) if c["cell_type"] == "markdown"]


def section(path: Path, heading: str) -> str:
    """The markdown from the `## heading` cell to the next `## ` heading."""
    found, inside = [], False
    for md in markdown(path):
        for line in md.splitlines():
            if line.startswith("## "):
                inside = line[3:].strip().lower().startswith(heading.lower())
            if inside:
                found.append(line)
    return "\n".join(found)


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_it_opens_with_objectives_and_run_time(path: Path) -> None:
    opening = markdown(path)[0]
    assert opening.startswith(f"# {path.name[:2]} "), "the first cell is the notebook's title"
    objectives = opening.split("**You will learn to**", 1)
    assert len(objectives) == 2, "the opening lists '**You will learn to**' and its objectives"
    assert len(re.findall(r"^- ", objectives[1], re.M)) >= 2, "at least two objectives"
    assert re.search(r"\*\*Run time:\*\* about \d+ minutes", opening), "a run time in minutes"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_it_ends_with_a_recap_further_reading_and_navigation(path: Path) -> None:
    assert len(re.findall(r"^- ", section(path, "Recap"), re.M)) >= 3, "a recap of 3+ bullets"
    assert len(LINK.findall(section(path, "Further reading"))) >= 2, "2+ further-reading links"
    last = cells(path)[-1]
    assert last["cell_type"] == "markdown", "the last cell links to the neighbours"
    index = NOTEBOOKS.index(path)
    linked = set(re.findall(r"\]\(([^)\s]+\.ipynb)\)", text(last)))
    assert NOTEBOOKS[index - 1].name in linked, "a link to the previous notebook"
    if index + 1 < len(NOTEBOOKS):
        assert NOTEBOOKS[index + 1].name in linked, "a link to the next notebook"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_clean_up_leaves_the_panels_alive(path: Path) -> None:
    code = [text(c) for c in cells(path) if c["cell_type"] == "code"]
    assert code[-1].startswith("clean_up("), "the last code cell is clean_up(...)"
    # `panel = Panel(server, ...)`: closing the panel, or stopping the server it watches, before
    # clean_up() would leave a dead panel behind after Run All.
    bound = re.findall(r"^(\w+) = \w*Panel\((\w+)", "\n".join(code), re.M)
    assert bound, "a lesson has a live panel"
    for panel, server in bound:
        pattern = rf"^\s*({panel}\.close|{server}\.stop)\(\)"
        early = [c for c in code[:-1] if re.search(pattern, c, re.M)]
        assert not early, f"only clean_up() may close {panel} or stop {server}: {early}"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_markdown_on_the_lesson_path_is_short(path: Path) -> None:
    optional = False
    for md in markdown(path):
        heading = next((line for line in md.splitlines() if line.startswith("## ")), None)
        if heading is not None:
            optional = bool(re.search(r"optional|appendix", heading, re.I))
        if optional or md.startswith("<details>"):
            continue
        words = len(re.sub(r"```.*?```", "", md, flags=re.S).split())
        assert words <= MAX_WORDS, f"{words} words; split it, use bullets, or move it to an " \
                                   f"optional appendix:\n{md[:300]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_run_all_cannot_run_or_reveal_a_solution(path: Path) -> None:
    for cell in cells(path):
        tags = cell.get("metadata", {}).get("tags", [])
        if "solution" in tags:
            assert cell["cell_type"] == "markdown", "a solution is markdown, never code"
            assert text(cell).startswith("<details>"), "a solution starts collapsed"
        assert not cell.get("metadata", {}).get("jupyter", {}).get("source_hidden"), \
            "hidden code still runs under Run All: make it a collapsed markdown solution"
    solved(json.loads(path.read_text()), path.name)  # every check has its solution, and back
