"""The first code cell of every notebook: is everything this kit needs here?"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys

#: Import name -> distribution name, for the packages in requirements.txt the kit imports.
NEEDED = {"requests": "requests", "flask": "flask", "fastapi": "fastapi", "uvicorn": "uvicorn",
          "aiohttp": "aiohttp", "ipywidgets": "ipywidgets", "matplotlib": "matplotlib"}
SERVERS = ["servers.flask_server", "servers.fastapi_server"]


def check_environment() -> str:
    """Return a one-line summary if the kit can run here; raise RuntimeError saying how to fix it.

    Checks the Python version, and that the packages in requirements.txt and the bundled servers
    are installed for this kernel's Python, because a notebook that fails half-way through
    teaches nothing. It finds them without importing them: the servers run in processes of their
    own, so importing FastAPI and Flask here would only cost every notebook seconds at its start.
    """
    problems = []
    # The kernel may be another Python than the one the kit was installed for.
    if sys.version_info < (3, 10):  # noqa: UP036
        problems.append(f"Python {sys.version.split()[0]} is too old; use 3.10 or newer.")
    versions: dict[str, str] = {}
    for name, distribution in NEEDED.items():
        try:
            versions[name] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"cannot find {name}")
    for name in SERVERS:
        try:
            found = importlib.util.find_spec(name) is not None
        except ImportError:  # its package is missing
            found = False
        if not found:
            problems.append(f"cannot find {name}")
    if problems:
        raise RuntimeError(
            "This notebook cannot run yet: " + "; ".join(problems) + ". From the project folder, "
            "run `make lab` (it installs everything into .venv and opens JupyterLab), and pick "
            "the kernel of that .venv."
        )
    shown = ", ".join(f"{name} {version}" for name, version in versions.items())
    return f"Ready: Python {sys.version.split()[0]} at {sys.executable}; {shown}."
