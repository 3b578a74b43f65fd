"""Notebook 04's stream lanes: SSE and WebSocket on the asyncio server, beside the polling lanes."""

from __future__ import annotations

import pytest

from helpers.compare import EVERY_LANE, LANES, STREAM_LANES, LaneSpec, Scenario, parse_lanes


def test_the_stream_lanes_stream_from_the_asyncio_server_and_are_not_run_by_default() -> None:
    assert list(STREAM_LANES) == ["sse", "ws"]
    assert {name: spec.strategy for name, spec in STREAM_LANES.items()} == {"sse": "sse",
                                                                            "ws": "ws"}
    assert all(spec.server.module == "servers.fastapi_server" for spec in STREAM_LANES.values())
    assert all(spec.delivery_wait(Scenario()) == 0.0 for spec in STREAM_LANES.values())
    assert not set(STREAM_LANES) & set(LANES)
    assert list(EVERY_LANE) == [*LANES, *STREAM_LANES]


def test_lanes_are_parsed_from_every_lane_in_the_standard_order() -> None:
    assert parse_lanes("ws,asyncio,sse") == ["asyncio", "sse", "ws"]
    with pytest.raises(ValueError, match="sse, ws"):
        parse_lanes("sse,carrier-pigeon")


def test_a_stream_lane_needs_the_asyncio_server() -> None:
    with pytest.raises(ValueError, match="asyncio server"):
        LaneSpec("x", "x", "naive", "tab:blue", "-", delivery="sse")
    with pytest.raises(ValueError, match="asyncio server"):
        LaneSpec("x", "x", "asyncio", "tab:blue", "-", delivery="long")
