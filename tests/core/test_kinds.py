"""helpers/kinds.py: one catalogue of server kinds, read by the launcher, panels and bench."""

from __future__ import annotations

import importlib.util

import pytest

from helpers.kinds import KINDS, STRATEGY_TITLES, find_kind, kind_of_module


def test_every_kind_names_a_module_that_exists() -> None:
    for kind in KINDS.values():
        assert importlib.util.find_spec(kind.module) is not None, kind


def test_the_flask_server_sleeps_and_takes_a_check_interval() -> None:
    for name in ("short", "naive", "flask"):
        kind = find_kind(name)
        assert kind.module == "servers.flask_server"
        assert kind.sleeps and kind.family == "flask"
        assert kind.takes("check_interval") and kind.takes("threaded")
    assert find_kind("short").strategy == "short"
    assert find_kind("naive").strategy == "long"


def test_the_asyncio_servers_are_woken() -> None:
    for name in ("asyncio", "fastapi", "racy"):
        kind = find_kind(name)
        assert not kind.sleeps and kind.family == "asyncio"
        assert kind.strategy == "long"
        assert not kind.takes("check_interval")


def test_the_proxy_serves_no_strategy() -> None:
    proxy = find_kind("proxy")
    assert proxy.strategy is None and proxy.waiting == "forwards" and not proxy.sleeps
    assert proxy.takes("upstream")


def test_an_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="'tornado'.*short, naive, flask, asyncio"):
        find_kind("tornado")


def test_a_module_maps_back_to_its_first_kind() -> None:
    assert kind_of_module("servers.flask_server") is KINDS["short"]
    assert kind_of_module("servers.fastapi_server") is KINDS["asyncio"]
    assert kind_of_module("bench.nowhere") is None


def test_each_strategy_has_a_title() -> None:
    assert set(STRATEGY_TITLES) == {"short", "long", "sse", "ws"}
    assert {k.strategy for k in KINDS.values()} - {None} <= set(STRATEGY_TITLES)
