"""helpers/processes.py: stop and reap a process group, and what a process costs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.processes import (
    children,
    cpu_seconds,
    kill_process_group,
    rss_kib,
    signal_group,
    stop_process_group,
    threads,
    total_cpu_seconds,
)

#: A process group leader that starts a child and ignores SIGTERM if asked (argv[1] == "stubborn").
LEADER = """
import signal, subprocess, sys, time
if sys.argv[1:] == ["stubborn"]:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def start_group(*args: str) -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen([sys.executable, "-c", LEADER, *args], stdout=subprocess.PIPE,
                               start_new_session=True)
    assert process.stdout is not None
    with process.stdout:
        child = int(process.stdout.readline())
    return process, child


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_stop_reaps_the_leader_and_kills_the_rest_of_its_group() -> None:
    process, child = start_group()
    assert children(process.pid) == [child]
    stop_process_group(process, timeout=5)
    assert process.returncode == -signal.SIGTERM
    assert wait_gone(child)


def test_a_leader_that_ignores_sigterm_is_killed_after_the_timeout() -> None:
    process, child = start_group("stubborn")
    started = time.monotonic()
    stop_process_group(process, timeout=0.3)
    assert process.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 3
    assert wait_gone(child)


def test_a_stopped_process_is_continued_so_that_it_can_exit() -> None:
    process, child = start_group()
    signal_group(process.pid, signal.SIGSTOP)
    stop_process_group(process, timeout=5)
    assert process.returncode == -signal.SIGTERM
    assert wait_gone(child)


def test_kill_is_sigkill_and_stopping_twice_is_harmless() -> None:
    process, child = start_group()
    kill_process_group(process)
    assert process.returncode == -signal.SIGKILL
    assert wait_gone(child)
    stop_process_group(process)  # already reaped: nothing to do, nothing raised
    kill_process_group(process)
    signal_group(process.pid, signal.SIGTERM)


def test_cpu_seconds_counts_this_process_and_raises_for_a_missing_one() -> None:
    before = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.1
    while time.process_time() < deadline:
        pass
    assert cpu_seconds(os.getpid()) >= before + 0.05
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    with pytest.raises(OSError):
        cpu_seconds(process.pid)
    assert total_cpu_seconds([os.getpid(), process.pid]) >= before


def test_memory_and_threads_of_this_process() -> None:
    assert rss_kib([os.getpid()]) > 1000
    assert threads([os.getpid()]) >= 1
    assert rss_kib([]) == threads([]) == 0
