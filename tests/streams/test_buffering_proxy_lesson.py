"""Notebook 07's buffering-proxy section: `helpers.delivery.proxies`, live on loopback."""

from __future__ import annotations

import pytest

from helpers import launch
from helpers.delivery.proxies import bursts, through_buffering_proxies


def test_bursts_groups_arrivals_that_came_together() -> None:
    assert bursts([]) == 0
    assert bursts([0.0, 0.05, 0.10]) == 3
    assert bursts([1.0, 1.001, 1.002, 1.5, 1.501]) == 2


@pytest.mark.live
def test_only_sse_through_a_proxy_that_ignores_the_header_is_held_back() -> None:
    with launch("asyncio") as server:
        rows = through_buffering_proxies(server, modes=("on", "force"), events=60, rate=60)
    by = {(r.buffering, r.style): r for r in rows}
    for mode in ("on", "force"):
        assert by[mode, "long"].received == 60 and by[mode, "long"].bursts > 30, by[mode, "long"]
    assert by["on", "sse"].received == 60 and by["on", "sse"].bursts > 30, by["on", "sse"]
    held = by["force", "sse"]
    # 60 SSE messages are about 5.3 KB: the 4,096-byte buffer goes out once, in one burst,
    # and what is left stays in it
    assert 0 < held.received < 60 and held.bursts == 1, held
