"""`checks` in /stats: the sleep loop's looks at the log, which notebook 05 counts per second."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from helpers import Server

pytestmark = pytest.mark.live


def held_poll(server: Server, seconds: float) -> int:
    """Hold one quiet poll for `seconds`; return how many checks the server counted meanwhile."""
    before = server.stats()
    r = requests.get(f"{server.url}/poll_for_updates", timeout=seconds + 5,
                     params={"last_event_id": before["last_event_id"], "timeout": seconds})
    assert r.status_code == 204
    return int(server.stats()["checks"] - before["checks"])


def test_the_sleep_loop_counts_one_check_per_nap(launched: Callable[..., Server]) -> None:
    naive = launched("naive", check_interval=0.05)
    assert 12 <= held_poll(naive, 1.0) <= 21  # 1.0 s / 0.05 s = 20 naps, fewer if a nap runs long


def test_a_woken_server_never_checks(launched: Callable[..., Server]) -> None:
    assert held_poll(launched("asyncio"), 0.5) == 0
