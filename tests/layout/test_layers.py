"""Imports run one way (style guide, point 18): servers <- helpers core <- lessons <- bench.

The first tests run the checker on small made-up trees, so that a checker that finds nothing
cannot pass for a clean repository; the last ones run it on the kit itself.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from layers import ORDER, cycles, scan, wrong_way

ROOT = Path(__file__).resolve().parents[2]


def make_tree(root: Path, files: dict[str, str]) -> Path:
    for name in ("servers/__init__.py", "helpers/__init__.py", "bench/__init__.py"):
        files.setdefault(name, "")
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_a_downward_import_is_fine(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {
        "servers/contract.py": "",
        "helpers/clients.py": "from servers.contract import Event\n",
        "helpers/compare/__init__.py": "from helpers.compare.lanes import Lane\n",
        "helpers/compare/lanes.py": "from helpers import clients\nimport servers.contract\n",
        "bench/run.py": "from helpers.compare import Lane\nfrom helpers.clients import X\n",
    })
    assert wrong_way(root) == []
    assert cycles(root) == []
    assert scan(root)[1] == []


def test_an_upward_import_is_found_even_inside_a_function(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {
        "helpers/scaling/__init__.py": "def f():\n    from bench import scenarios\n",
        "bench/scenarios.py": "",
        "servers/store.py": "import helpers\n",
    })
    found = wrong_way(root)
    assert len(found) == 2, found
    assert any("helpers.scaling (helpers/scaling) imports bench.scenarios (bench)" in f
               for f in found)
    assert any("servers.store (servers) imports helpers (helpers core)" in f for f in found)


def test_a_lesson_may_not_import_another_lesson(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {
        "helpers/compare/__init__.py": "",
        "helpers/faults/__init__.py": "from helpers.compare import Lane\n",
    })
    assert len(wrong_way(root)) == 1


def test_private_names_across_modules_are_found(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {
        "helpers/launcher.py": """\
            def _default_log_dir(): ...
            class Server:
                def _start(self): ...
            def launch(server):
                server._start()
            """,
        "helpers/scaling.py": "from helpers.launcher import _default_log_dir\n",
        "helpers/faults.py": "from helpers import launcher\nlauncher._running.clear()\n",
        "helpers/sweep.py": "def go(server):\n    server._start()\n    server.box._repr_html_()\n",
        "helpers/ok.py": "def _mine(): ...\n_mine()\nfrom helpers.launcher import __doc__\n",
    })
    private = scan(root)[1]
    assert len(private) == 3, private
    assert any("imports _default_log_dir from helpers.launcher" in p for p in private)
    assert any("reads helpers.launcher._running" in p for p in private)
    assert any(p.startswith("helpers/sweep.py:2 reads ._start") for p in private)


def test_relative_imports_are_resolved(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {
        "helpers/compare/__init__.py": "from .lanes import Lane\n",
        "helpers/compare/lanes.py": "from ..scaling import sweep\n",
        "helpers/scaling/__init__.py": "",
    })
    assert len(wrong_way(root)) == 1


def test_a_cycle_is_found(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {
        "helpers/a.py": "import helpers.b\n",
        "helpers/b.py": "def f():\n    from helpers.c import x\n",
        "helpers/c.py": "from helpers.a import y\n",
    })
    assert cycles(root) == [["helpers.a", "helpers.b", "helpers.c", "helpers.a"]]


@pytest.mark.parametrize("check", ["direction", "private names", "cycles"])
def test_the_kit_itself(check: str) -> None:
    if check == "direction":
        found = wrong_way(ROOT)
        assert not found, f"imports against {ORDER}:\n" + "\n".join(found)
    elif check == "private names":
        found = scan(ROOT)[1]
        assert not found, "private names reached across modules:\n" + "\n".join(found)
    else:
        found = [" -> ".join(c) for c in cycles(ROOT)]
        assert not found, "import cycles:\n" + "\n".join(found)


def test_every_module_has_its_line_in_docs_architecture() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    missing = [str(path.relative_to(ROOT)) for package in ("helpers", "bench")
               for path in sorted((ROOT / package).rglob("*.py"))
               if f"`{path.relative_to(ROOT)}`" not in doc]
    missing += [f"servers/{p.name}" for p in sorted((ROOT / "servers").glob("*.py"))
                if p.name != "__init__.py" and f"`servers/{p.name}`" not in doc]
    assert not missing, f"docs/architecture.md has no line for: {missing}"
