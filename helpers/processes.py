"""Processes the kit starts: their ports, stopping and reaping a process group, and what a
process costs (Linux).

    stop_process_group(process)        # SIGTERM to the group, SIGKILL if it lingers, then reap
    kill_process_group(process)        # SIGKILL at once: a crash, no goodbye
    cpu_seconds(pid)                   # user + system CPU time, from /proc/<pid>/stat
    free_port()                        # a port for a server, outside the OS's outgoing range

Every server the kit starts leads its own process group (`start_new_session=True`), so a signal
to the group reaches the server and anything it started, and never the kernel that launched it.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
from collections.abc import Iterable
from pathlib import Path

# Servers get ports from here up to the start of the range the OS hands out to outgoing
# connections (Linux's ip_local_port_range, 32768 by default; macOS's starts at 49152).
SERVER_PORTS_FROM = 20_000
_OUTGOING_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def outgoing_ports_from() -> int:
    """The lowest port the OS gives outgoing connections (Linux's default where unreadable)."""
    try:
        return int(_OUTGOING_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` just now, for a server the kit starts, below the range of
    ports the OS gives outgoing connections.

    A server that restarts comes back on the same port, so its clients find it again, and the
    port must still be free then. A port the OS picked (binding port 0) comes from the outgoing
    range: while the server is down, any connection opened on the machine may take it, and a
    client retrying against the stopped server may even connect to itself through it (TCP
    self-connect). Below that range neither can happen. Under `make unit` a restart once found
    its port taken. Where the outgoing range starts too low to leave room, the OS picks.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    outgoing_from = outgoing_ports_from()
    ports = range(SERVER_PORTS_FROM, outgoing_from)
    tries = random.sample(ports, 50) if len(ports) > 1000 else [0]  # [0]: the OS picks
    for port in tries:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue  # in use: try another
            picked: int = sock.getsockname()[1]
            return picked
    raise OSError(f"no free port on {host} between {SERVER_PORTS_FROM} and {outgoing_from}")


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
