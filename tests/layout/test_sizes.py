"""Issue 10's size limits, so the layout stays readable: no class over 250 lines anywhere in the
kit, and no file in servers/ over 300 lines (each server file shows one way of waiting)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_CLASS_LINES = 250
MAX_SERVER_FILE_LINES = 300


def class_sizes() -> dict[str, int]:
    sizes = {}
    for package in ("servers", "helpers", "bench"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                    sizes[f"{path.relative_to(ROOT)}:{node.name}"] = node.end_lineno - first + 1
    return sizes


def test_no_class_is_over_250_lines() -> None:
    sizes = class_sizes()
    assert sizes, "found no classes: the walk is broken"
    big = {name: n for name, n in sizes.items() if n > MAX_CLASS_LINES}
    assert not big, f"split these classes the way their jobs split: {big}"


def test_no_server_file_is_over_300_lines() -> None:
    lengths = {p.name: len(p.read_text().splitlines()) for p in (ROOT / "servers").glob("*.py")}
    big = {name: n for name, n in lengths.items() if n > MAX_SERVER_FILE_LINES}
    assert not big, f"servers/ files over {MAX_SERVER_FILE_LINES} lines: {big}"
