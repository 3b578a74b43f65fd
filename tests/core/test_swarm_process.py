"""helpers/swarm.py and swarm_worker.py: the swarm's clients in a process of their own.

What a swarm reports must be the same whether its clients run in the host process or on a
thread of this one, and the host must never outlive the process that started it.
"""

from __future__ import annotations

import functools
import os
import random
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import Server, Swarm
from helpers.swarm import swarm_host


@pytest.fixture
def wait_for(waiter: Callable[..., None]) -> Callable[..., None]:
    """`waiter` (tests/conftest.py), checking every 20 ms."""
    return functools.partial(waiter, interval=0.02)


def sockets_of(pid: int) -> int:
    """How many sockets process `pid` has open (Linux's /proc)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:  # closed while we looked
            pass
    return count


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.live
def test_the_clients_connections_are_in_the_host_not_here(asyncio_server: Server,
                                                          wait_for: Callable[..., None]) -> None:
    here = sockets_of(os.getpid())
    with Swarm(asyncio_server.url, 40, "long", hold=5,
               last_event_id=asyncio_server.stats()["last_event_id"]) as swarm:
        host = swarm.pid
        assert host is not None and host != os.getpid()
        wait_for(lambda: sockets_of(host) >= 40, 10, "40 sockets in the host")
        assert sockets_of(os.getpid()) < here + 40  # none of them here
        event = asyncio_server.trigger("to the host")
        wait_for(lambda: swarm.metrics.summary()["events"] == 40, 10, "40 deliveries")
    summary = swarm.metrics.summary()
    assert summary["missing"] == summary["duplicates"] == 0
    # Receive times were taken by the clients, after the event's own timestamp.
    assert all(d.received_at >= event["timestamp"] for d in swarm.metrics.deliveries)
    assert all(c.last_event_id == event["id"] for c in swarm.cursors)


@pytest.mark.live
def test_process_and_thread_swarms_report_the_same_things(asyncio_server: Server,
                                                          wait_for: Callable[..., None]) -> None:
    reports = {}
    for process in (True, False):
        start = asyncio_server.stats()["last_event_id"]
        with Swarm(asyncio_server.url, 5, "long", hold=5, last_event_id=start, record=True,
                   process=process) as swarm:
            wait_for(lambda: asyncio_server.stats()["waiting"] >= 5, 10, "5 held polls")
            for i in range(3):
                asyncio_server.trigger(f"event {i}")
            last = start + 3
            wait_for(lambda: all(c.last_event_id == last for c in swarm.cursors),  # noqa: B023
                     10, "every client at the third event")
        summary = swarm.metrics.summary()
        reports[process] = (summary["events"], summary["missing"], summary["duplicates"],
                            summary["errors"], {a.status for a in swarm.attempts})
        assert swarm.pid is None  # a stopped swarm has no host pid; a thread never had one
    assert reports[True] == reports[False] == (15, 0, 0, 0, {200})


@pytest.mark.live
def test_kill_in_the_host_moves_the_callers_generator_on(asyncio_server: Server,
                                                         wait_for: Callable[..., None]) -> None:
    rng = random.Random(7)
    with Swarm(asyncio_server.url, 10, "long", hold=5) as swarm:
        wait_for(lambda: asyncio_server.stats()["waiting"] >= 10, 10, "10 held polls")
        first = swarm.kill(3, rng=rng)
        second = swarm.kill(3, rng=rng)
    assert len(first) == len(second) == 3 and swarm.kills == 6
    assert first != second  # the generator's state came back from the host


def run_kernel(code: str) -> subprocess.Popen[str]:
    """A stand-in for a kernel: a Python process that starts a swarm and prints the host's pid."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                            stdout=subprocess.PIPE, text=True)


@pytest.mark.live
@pytest.mark.parametrize("ending", ["exits", "is killed"])
def test_the_host_does_not_outlive_its_kernel(asyncio_server: Server, ending: str,
                                              wait_for: Callable[..., None]) -> None:
    kernel = run_kernel(f"""
        import os, signal, sys
        from helpers import Swarm
        swarm = Swarm({asyncio_server.url!r}, 5, "long", hold=5).start()  # never stopped
        print(swarm.pid, flush=True)
        if {ending == "is killed"}:
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    try:
        assert kernel.stdout is not None
        host = int(kernel.stdout.readline())
        kernel.wait(20)
        wait_for(lambda: not alive(host), 10, f"the swarm host (pid {host}) to exit")
    finally:
        kernel.kill()
        kernel.communicate()  # reaps it and closes its stdout


def test_a_dead_host_is_replaced_by_the_next_swarm(asyncio_server: Server,
                                                   wait_for: Callable[..., None]) -> None:
    host = swarm_host()
    os.kill(host.pid, signal.SIGKILL)
    wait_for(lambda: not host.alive, 5, "the killed host's pipe to close")
    with Swarm(asyncio_server.url, 2, "long", hold=5) as swarm:
        assert swarm.pid not in (None, host.pid)
    assert not alive(host.pid)
