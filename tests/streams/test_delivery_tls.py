"""Notebook 07's TLS engine (`helpers.delivery.tls`) on a real https server: it counts what
each way of delivering pays in handshakes, and times a handshake."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from helpers import Server
from helpers.delivery.tls import WAYS, handshake_cost, handshakes_per_event

pytestmark = pytest.mark.live


def test_handshakes_are_counted_per_way(launched: Callable[..., Server]) -> None:
    server = launched("asyncio", tls=True)
    rows = {r.way: r for r in handshakes_per_event(server, events=5)}
    assert list(rows) == list(WAYS) and all(r.events == 5 for r in rows.values())
    assert rows["long, new connection per poll"].connections >= 5
    for way in ("long, kept-alive", "SSE", "WebSocket"):
        assert rows[way].connections <= 2, rows[way]  # its own one, and perhaps a launcher call


def test_handshake_cost_is_measured(launched: Callable[..., Server]) -> None:
    server = launched("asyncio", tls=True)
    cost = handshake_cost(server, samples=5)
    assert cost.samples == 5 and cost.tcp_connect_ms > 0 and cost.tls_connect_ms > 0
    assert cost.kept_connection_request_ms > 0 and cost.new_connection_request_ms > 0


def test_it_needs_an_https_server(launched: Callable[..., Server]) -> None:
    server = launched("asyncio")
    with pytest.raises(ValueError, match="tls=True"):
        handshake_cost(server, samples=1)
