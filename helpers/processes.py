"""Processes the kit starts: stop and reap a process group, and what a process costs (Linux).

    stop_process_group(process)        # SIGTERM to the group, SIGKILL if it lingers, then reap
    kill_process_group(process)        # SIGKILL at once: a crash, no goodbye
    cpu_seconds(pid)                   # user + system CPU time, from /proc/<pid>/stat

Every server the kit starts leads its own process group (`start_new_session=True`), so a signal
to the group reaches the server and anything it started, and never the kernel that launched it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send `sig` to process group `pgid`; a group that is already gone is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_process_group(process: subprocess.Popen[bytes], timeout: float = 5.0, *,
                       sig: signal.Signals = signal.SIGTERM) -> None:
    """Stop the group `process` leads and reap it: `sig`, then SIGKILL after `timeout` s.

    A stopped (SIGSTOP) process is continued too, since it must run to exit. Whatever else is
    left in the group afterwards is killed, so nothing outlives the call. Returns once `process`
    has been waited for.
    """
    if process.poll() is None:
        signal_group(process.pid, sig)
        signal_group(process.pid, signal.SIGCONT)  # a paused process must run to exit
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            signal_group(process.pid, signal.SIGKILL)
    process.wait()
    # Children left in the group (workers, helpers) would be orphans now; make sure of them.
    signal_group(process.pid, signal.SIGKILL)


class StartedProcess:
    """Something the kit runs as one process of its own, `process` (None until it starts): a
    bundled server (`Server`), Redis (`RedisServer`), nginx (`Nginx`)."""

    process: subprocess.Popen[bytes] | None

    @property
    def pid(self) -> int:
        """The process's pid (an AssertionError before it was ever started)."""
        assert self.process is not None, f"the {type(self).__name__} was never started"
        return self.process.pid

    @property
    def running(self) -> bool:
        """True from its start until it exits."""
        return self.process is not None and self.process.poll() is None


def kill_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the group `process` leads, as a crash or an out-of-memory kill would; reap it."""
    if process.poll() is None:
        signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _stat_fields(pid: int) -> list[str]:
    # The command name (field 2) may contain spaces and parentheses: split after its last ")".
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process `pid` has used so far, in seconds, from /proc.

    Raises OSError if there is no such process (or no /proc: not Linux).
    """
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def total_cpu_seconds(pids: Iterable[int]) -> float:
    """`cpu_seconds` summed over `pids`, skipping those that have gone."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid)
    return total


def status_field(pid: int, name: str) -> int:
    """An integer field of /proc/<pid>/status ("VmRSS" in KiB, "Threads"); 0 if unknown."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return 0


def rss_kib(pids: Iterable[int]) -> int:
    """Resident memory of these processes (the sum of their VmRSS), in KiB."""
    return sum(status_field(pid, "VmRSS") for pid in pids)


def threads(pids: Iterable[int]) -> int:
    """How many threads these processes run, together."""
    return sum(status_field(pid, "Threads") for pid in pids)


def children(pid: int) -> list[int]:
    """The pids whose parent is `pid` (from /proc; empty where there is none)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(_stat_fields(int(entry.name))[1]) == pid:
                found.append(int(entry.name))
    return found
