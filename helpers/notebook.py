"""What a notebook cell needs about the notebook itself: code on screen, and a clean-up that
leaves a learner's panels alive.

    show_code("servers.flask_server", "poll_for_updates")   # the handler, as it runs
    clean_up(panel, server)                                  # last cell of every notebook
"""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
from typing import Any

from helpers.experiment import unattended


def source_of(module: str, name: str) -> str:
    """The source of function or class `name` in `module`, as it is on disk right now.

    `name` may be nested (a route defined inside `create_app`) or qualified with dots
    (`PollClient.poll_once`). Raises LookupError, naming what exists, if it is not there.
    """
    path = inspect.getsourcefile(importlib.import_module(module))
    if path is None:
        raise LookupError(f"{module} has no source file to show")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    tree = ast.parse(text)
    *outer, last = name.split(".")
    scope: ast.AST = tree
    for part in outer:
        scope = next((n for n in ast.walk(scope) if isinstance(n, ast.ClassDef)
                      and n.name == part), None) or _missing(module, name, tree)
    found = next((n for n in ast.walk(scope)
                  if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  and n.name == last), None) or _missing(module, name, tree)
    assert found.end_lineno is not None
    first = min([found.lineno, *(d.lineno for d in found.decorator_list)])
    lines = text.splitlines()[first - 1 : found.end_lineno]
    return textwrap.dedent("\n".join(lines))


def _missing(module: str, name: str, tree: ast.AST) -> Any:
    names = sorted({n.name for n in ast.walk(tree)
                    if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))})
    raise LookupError(f"{module} defines no {name}; it defines: {', '.join(names)}")


def show_code(module: str, name: str) -> Any:
    """Display `name` from `module` with syntax highlighting, read from the file that runs.

    Returns an IPython `Code` object (a notebook shows it when it ends a cell), so the code on
    screen can never drift from the code the servers and clients execute.
    """
    from IPython.display import Code

    return Code(source_of(module, name), language="python")


def clean_up(*resources: object) -> str:
    """The last cell of a notebook: stop what it started, but only when nobody is watching.

    Run unattended (`unattended()`, as under nbval in `make test`), it closes or stops each of
    `resources` in order: panels, sessions, clients, servers. In JupyterLab it leaves them all
    running, because Run All would otherwise end by closing every panel the learner scrolls
    back to. Nothing is left behind either way: `launch()` ties each server to this kernel, so
    shutting the kernel down stops them. Returns what it did, in a sentence.
    """
    if not unattended():
        return ("Everything above is still running, so the panels stay live. Shut the kernel "
                "down (Kernel > Shut Down Kernel) to stop every server this notebook launched.")
    for resource in resources:
        closer = getattr(resource, "close", None) or getattr(resource, "stop", None)
        if closer is None:
            raise TypeError(f"clean_up() stops what has .close() or .stop(), not {resource!r}")
        closer()
    return f"Stopped {len(resources)} things: " + ", ".join(type(r).__name__ for r in resources)
