"""The first code cell of every notebook: is everything this kit needs here?"""

from __future__ import annotations

import importlib
import sys

NEEDED = ["requests", "flask", "fastapi", "uvicorn", "aiohttp", "ipywidgets", "matplotlib"]


def check_environment() -> str:
    """Return a one-line summary if the kit can run here; raise RuntimeError saying how to fix it.

    Checks the Python version, the packages in requirements.txt and that the bundled servers
    import, because a notebook that fails half-way through teaches nothing.
    """
    problems = []
    # The kernel may be another Python than the one the kit was installed for.
    if sys.version_info < (3, 10):  # noqa: UP036
        problems.append(f"Python {sys.version.split()[0]} is too old; use 3.10 or newer.")
    versions: dict[str, str] = {}
    for name in NEEDED + ["servers.flask_server", "servers.fastapi_server"]:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            problems.append(f"cannot import {name} ({exc})")
        else:
            versions[name] = getattr(module, "__version__", "")
    if problems:
        raise RuntimeError(
            "This notebook cannot run yet: " + "; ".join(problems) + ". From the project folder, "
            "run `make lab` (it installs everything into .venv and opens JupyterLab), and pick "
            "the kernel of that .venv."
        )
    shown = ", ".join(f"{n} {v}" for n, v in versions.items() if v and "." not in n)
    return f"Ready: Python {sys.version.split()[0]} at {sys.executable}; {shown}."
