"""Engines never import ipywidgets at module import: a script or a test runs them without it.

The panels are imported on first use (PEP 562 module `__getattr__`), so only asking for one
imports ipywidgets. Add a module to ENGINES to hold it to the same promise.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

ENGINES = [
    "helpers",
    "helpers.faults",
    "helpers.scaling",
]


def imports_widgets(statement: str) -> bool:
    """Whether running `statement` in a fresh interpreter leaves ipywidgets imported."""
    done = subprocess.run(
        [sys.executable, "-c", f"{statement}\nimport sys\n"
                               "print('ipywidgets' in sys.modules)"],
        capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.strip() == "True"


@pytest.mark.parametrize("module", ENGINES)
def test_importing_an_engine_leaves_ipywidgets_out(module: str) -> None:
    assert not imports_widgets(f"import {module}")


def test_asking_for_a_panel_imports_it() -> None:
    assert imports_widgets("from helpers import Panel")
    assert imports_widgets("from helpers.scaling import ScalingExplorer")
    assert imports_widgets("from helpers.faults import FaultPanel")
