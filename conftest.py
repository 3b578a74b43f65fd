"""Project-wide pytest set-up, for the unit tests and for the notebooks under nbval."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

# Notebooks shrink their long live runs (helpers.headless()), and, since nobody is watching,
# their last cell stops what they started (helpers.unattended()). nbval starts each kernel from
# this process, so the kernel inherits both. The browser test's JupyterLab gets only the first:
# there, as for a learner, Run All must leave every panel live.
os.environ.setdefault("POLLING_LAB_HEADLESS", "1")
os.environ.setdefault("POLLING_LAB_UNATTENDED", "1")
# Every process started from this run (kernels, and the servers they launch) inherits this tag,
# so the leftover check below sees only this run's servers, not another run's on the machine.
RUN_TAG = f"POLLING_LAB_TEST_RUN={uuid.uuid4().hex}".encode()
os.environ["POLLING_LAB_TEST_RUN"] = RUN_TAG.split(b"=", 1)[1].decode()


def bundled_server_pids(tag: bytes | None = RUN_TAG) -> set[int]:
    """PIDs of live `python -m servers.<name>` processes (Linux /proc), started by this run
    unless `tag` is None."""
    pids = set()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if not (b"-m" in argv and any(arg.startswith(b"servers.") for arg in argv)):
                continue
            if tag is not None and tag not in (entry / "environ").read_bytes().split(b"\0"):
                continue
        except OSError:
            continue
        pids.add(int(entry.name))
    return pids


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.has_plugin("nbval"):
        _kernels_over_unix_sockets()


def _kernels_over_unix_sockets() -> None:
    """nbval's kernels talk to pytest over Unix sockets in a folder of their own, not over
    loopback TCP ports.

    For TCP, jupyter_client picks a kernel's five ports by binding port 0 and letting them go,
    then starts the kernel, which binds them about a second later. Meanwhile the notebooks
    running beside it start servers on port 0 and open thousands of loopback connections, all
    from the same range of ports. With three notebooks at a time a kernel once never answered
    ("Kernel didn't respond in 60 seconds" for notebook 03, on a fresh clone); nbval sends a
    kernel's stderr to /dev/null, so the cause was not recorded, but a socket file cannot be
    taken that way. The notebooks' cells see no difference.
    """
    import nbval.kernel
    from jupyter_client.manager import KernelManager

    folder = tempfile.mkdtemp(prefix="polling-lab-kernels-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)

    class UnixSocketKernelManager(KernelManager):  # type: ignore[misc]
        def __init__(self, **kwargs: Any) -> None:
            # jupyter_client names each channel's socket file <ip>-<n>
            super().__init__(transport="ipc", ip=os.path.join(folder, uuid.uuid4().hex[:12]),
                             **kwargs)

    nbval.kernel.KernelManager = UnixSocketKernelManager


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_BEFORE] = bundled_server_pids()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a test or a notebook left a bundled server running.

    Under pytest-xdist each worker has a tag of its own (it imports this module afresh) and
    checks its own servers here, before its exit would stop them through their atexit handler.
    A worker's exit status does not fail an xdist run, so it hands what it found to the
    controlling process (`pytest_testnodedown` below), which fails the run.
    """
    before = session.config.stash.get(_BEFORE, set())
    deadline = time.monotonic() + 5  # a stopped kernel's servers get SIGTERM, then exit
    while (left := bundled_server_pids() - before) and time.monotonic() < deadline:
        time.sleep(0.1)
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker
        workeroutput[_LEFT_KEY] = sorted(left)
        return
    left |= set(session.config.stash.get(_WORKERS_LEFT, []))
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"FAILED: bundled server processes left running: {sorted(left)}",
                                red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook, in the controlling process
def pytest_testnodedown(node: Any, error: object) -> None:
    """Collect the servers a finished xdist worker found left running."""
    left = getattr(node, "workeroutput", {}).get(_LEFT_KEY, [])
    node.config.stash.setdefault(_WORKERS_LEFT, []).extend(left)


_BEFORE = pytest.StashKey[set[int]]()
_WORKERS_LEFT = pytest.StashKey[list[int]]()
_LEFT_KEY = "polling_lab_servers_left_running"
