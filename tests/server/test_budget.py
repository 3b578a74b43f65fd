"""servers/limits.py: the open-file budget a server plans at start, and its one at-limit line."""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import pytest

from servers.limits import RESERVED_FDS, AtLimit, Budget


def test_a_low_limit_caps_max_waiting_and_keeps_a_margin() -> None:
    budget = Budget(1024, 1024, 15_000)
    assert budget.connections == 1024 - RESERVED_FDS
    assert budget.margin == budget.connections // 8
    assert budget.max_waiting == budget.connections - budget.margin
    assert budget.capped and budget.max_threads == budget.connections
    line = budget.describe("demo")
    assert "open files 1024 (hard 1024)" in line and "--max-waiting 15000 lowered" in line
    assert budget.stats()["open_files"]["margin"] == budget.margin


def test_a_high_limit_leaves_max_waiting_as_asked() -> None:
    budget = Budget(1_048_576, 1_048_576, 15_000)
    assert budget.max_waiting == 15_000 and not budget.capped
    assert "lowered" not in budget.describe("demo")
    assert Budget(1024, 1024, 0).max_waiting == 0  # max_waiting 0 is a choice, not an error


def test_werkzeug_connections_cost_two_descriptors() -> None:
    assert Budget(1024, 1024, 15_000, fds_per_connection=2).connections == (1024 - 48) // 2


def test_a_limit_too_low_for_one_poll_says_how_to_raise_it() -> None:
    with pytest.raises(ValueError, match="ulimit -n"):
        Budget(50, 50, 100)


def test_the_hard_limit_may_be_unlimited() -> None:
    budget = Budget(4096, resource.RLIM_INFINITY, 100)
    assert budget.stats()["open_files"]["hard_limit"] == "unlimited"


def test_at_limit_says_it_once_then_counts() -> None:
    lines: list[str] = []
    at_limit = AtLimit("demo", quiet_s=0.2, write=lines.append)
    for _ in range(50):
        at_limit.report("at the open-file limit: full")
    assert lines == ["polling-lab demo: at the open-file limit: full"]
    time.sleep(0.25)
    at_limit.report("at the open-file limit: still full")
    assert lines[1] == ("polling-lab demo: at the open-file limit: still full "
                        "(49 more times since the last line)")
    assert at_limit.reports == 51


def test_a_server_raises_its_own_soft_limit_toward_the_hard_one() -> None:
    code = ("import resource; from servers.limits import raise_open_file_limit\n"
            "print(*raise_open_file_limit(), *resource.getrlimit(resource.RLIMIT_NOFILE))")

    def lowered() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 2048))

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, preexec_fn=lowered, check=True)
    assert done.stdout.split() == ["2048", "2048", "2048", "2048"]
