"""Fixtures for the real-browser test: a JupyterLab from the kit's .venv, and headless Chromium.

JupyterLab runs in its own session (process group) with throwaway settings, workspaces and
runtime directories, on a free loopback port with no token, serving copies of the notebooks so
that the repository's notebooks are never saved with outputs. Chromium is Debian's
(/usr/bin/chromium), driven by Playwright; Playwright's own browser download is never used.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from service_check import skip_or_fail_in_ci

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
SCREENSHOTS = ROOT / "results" / "screenshots"
LAB_LOGS = ROOT / "results"  # browser-jupyterlab-<lane>.log: one lab, and one log, per lane
CHROMIUM = Path(os.environ.get("POLLING_LAB_CHROMIUM", "/usr/bin/chromium"))
# --disable-background-networking and friends: without them this Chromium's own connections
# (and then the page's) get refused on a machine without internet access.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
#: Every lane one pytest process runs must fit in this: here one lane beside another took about
#: 3 minutes (2026-12-07), and both lanes one after the other, before the notebooks' trims, 8.
BUDGET_S = 900.0

#: User settings for the throwaway settings dir. No news or update pop-ups (they would cover
#: the screenshots and make requests to the internet). No windowing, so that every cell is in
#: the DOM with its prompt and outputs, whatever is scrolled into view.
LAB_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


class Budget:
    """One deadline for the whole browser test; every wait takes the smaller of its own
    timeout and what is left, so a hang fails the test instead of stalling CI."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def left(self, timeout: float) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"the browser test ran over its {self.seconds:g} s budget")
        return min(timeout, left)

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str,
                 interval: float = 0.25) -> Any:
        """Poll `predicate` until it returns something true, and return that."""
        deadline = time.monotonic() + self.left(timeout)
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:g} s (or the test's budget) waiting for "
                            f"{what}")
            time.sleep(interval)


@dataclass
class Lab:
    """A running JupyterLab: its URL, the folder it serves, and its log."""

    process: subprocess.Popen[bytes]
    root: Path  # the working copies of the notebooks
    log_path: Path
    runtime_dir: Path
    marker: str  # in the environment of the lab, its kernels and their servers
    url: str = ""
    _http: requests.Session = field(default_factory=requests.Session)
    _stopped: bool = False

    def api(self, path: str) -> Any:
        response = self._http.get(self.url + path, timeout=5)
        response.raise_for_status()
        return response.json()

    def shut_down_session(self, path: str) -> None:
        """Delete the notebook's session, and so its kernel, if it still has one."""
        for session in self.api("/api/sessions"):
            if session["path"] == path:
                self._http.delete(f"{self.url}/api/sessions/{session['id']}", timeout=10)

    def started_by_us(self, pids: set[int]) -> set[int]:
        """The processes among `pids` that this lab started, at any depth (kernels, servers)."""
        found = set()
        for pid in pids:
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"POLLING_LAB_BROWSER_RUN={self.marker}".encode() in environ:
                found.add(pid)
        return found

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, budget: Budget, timeout: float = 60.0) -> None:
        """Read the bound URL from the runtime dir's jpserver-PID.json, then wait for the API."""
        info = self.runtime_dir / f"jpserver-{self.process.pid}.json"

        def ready() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"JupyterLab exited with code {self.process.returncode} before it "
                            f"was ready; {self.log_path}:\n{self.log_tail()}")
            if not self.url:
                try:
                    self.url = json.loads(info.read_text())["url"].rstrip("/")
                except (OSError, ValueError, KeyError):
                    return False
            try:
                return self._http.get(self.url + "/api/status", timeout=2).ok
            except requests.RequestException:
                return False

        budget.wait_for(ready, timeout, f"JupyterLab to answer /api/status (log: {self.log_path})")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the lab's process group (it shuts its kernels down), then SIGKILL; reap.

        Only the first call does anything: once the lab is reaped, its group id may be reused.
        """
        if self._stopped:
            return
        self._stopped = True
        self._http.close()
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
        self.process.wait()
        _signal_group(self.process.pid, signal.SIGKILL)  # anything left in its group


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture(scope="session")
def bundled_server_pids(request: pytest.FixtureRequest) -> Callable[[], set[int]]:
    """The root conftest's `bundled_server_pids()`. Both conftest.py files are plain modules
    named `conftest`, so `from conftest import ...` could find either; ask pytest instead."""
    wanted = str(ROOT / "conftest.py")
    for plugin in request.config.pluginmanager.get_plugins():
        if getattr(plugin, "__file__", None) == wanted:
            found: Callable[[], set[int]] = plugin.bundled_server_pids
            return found
    raise RuntimeError(f"pytest did not load {wanted}")


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """results/screenshots/ (git-ignored): one full-page screenshot per notebook."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture(scope="session")
def budget() -> Budget:
    return Budget(BUDGET_S)


@pytest.fixture(scope="class")
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        budget: Budget) -> Iterator[Lab]:
    """JupyterLab on a free loopback port, serving copies of notebooks/*.ipynb: one for each
    lane of notebooks (a test class with a LANE), which its last test stops."""
    lane = getattr(request.cls, "LANE", "all")
    base = tmp_path_factory.mktemp(f"jupyterlab-{lane}")
    work = base / "notebooks"
    work.mkdir()
    for notebook in NOTEBOOK_DIR.glob("*.ipynb"):
        shutil.copy2(notebook, work / notebook.name)
    dirs = {name: base / name for name in ("settings", "workspaces", "runtime", "config",
                                            "data", "ipython")}
    for path in dirs.values():
        path.mkdir()
    for relative, values in LAB_SETTINGS.items():
        target = dirs["settings"] / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    marker = uuid.uuid4().hex
    env = {
        **os.environ,
        "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
        "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        # No ~/.jupyter config (a password), no user kernelspec shadowing the .venv's python3,
        # no IPython startup files: the lab and its kernels are the kit's and nothing else.
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "IPYTHONDIR": str(dirs["ipython"]),
        "POLLING_LAB_HEADLESS": "1",  # kernels run the shrunken headless scenarios
        # ...but someone is watching: as for a learner, clean_up() must leave the panels live
        "POLLING_LAB_UNATTENDED": "0",
        "POLLING_LAB_BROWSER_RUN": marker,  # inherited by kernels and the servers they launch
    }
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", "--ServerApp.port=0", "--ServerApp.port_retries=0",
        "--IdentityProvider.token=", "--ServerApp.password=", "--ServerApp.allow_root=True",
        # So that the test may shut a failed notebook's kernel down through the REST API. This
        # lab is throwaway, on loopback, and its only browser is the test's.
        "--ServerApp.disable_check_xsrf=True",
        f"--ServerApp.root_dir={work}",
    ]
    log_path = base / "jupyterlab.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=work, env=env,
                                   start_new_session=True)
    running = Lab(process, work, log_path, dirs["runtime"], marker)
    try:
        running.wait_ready(budget)
        yield running
    finally:
        running.stop()
        LAB_LOGS.mkdir(parents=True, exist_ok=True)  # next to the screenshots, for CI's artifacts
        shutil.copyfile(log_path, LAB_LOGS / f"browser-jupyterlab-{lane}.log")


class Chromium:
    """The launched browser. (Playwright's own repr names the path of its browser download,
    which this test never uses; this one names the binary that really runs.)"""

    def __init__(self, browser: Any) -> None:
        self.browser = browser

    def new_page(self, **options: Any) -> Any:
        return self.browser.new_page(**options)

    def __repr__(self) -> str:
        return f"<Chromium {self.browser.version} at {CHROMIUM}>"


@pytest.fixture(scope="session")
def browser() -> Iterator[Chromium]:
    """Headless Debian Chromium under Playwright (never Playwright's downloaded browsers)."""
    if not CHROMIUM.exists():
        skip_or_fail_in_ci(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install "
                           "chromium), or point POLLING_LAB_CHROMIUM at a Chromium binary")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Playwright gives every launch a fresh temporary profile (--user-data-dir).
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield Chromium(chromium)
        finally:
            chromium.close()

