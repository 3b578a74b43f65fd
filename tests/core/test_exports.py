"""helpers/__init__.py: the small public API a notebook imports (style guide, point 3)."""

from __future__ import annotations

import importlib

import helpers

EXPECTED = [
    "Experiment",
    "LongPollClient",
    "Metrics",
    "Panel",
    "PollError",
    "PollingLabError",
    "RedisMissing",
    "RedisServer",
    "SSEClient",
    "Server",
    "ServerNotReady",
    "ServerUnavailable",
    "Settings",
    "ShortPollClient",
    "Swarm",
    "WebSocketClient",
    "backoff_delay",
    "check",
    "check_client",
    "check_environment",
    "clean_up",
    "connect",
    "headless",
    "launch",
    "launch_cluster",
    "launch_redis",
    "measure",
    "redis_available",
    "show_code",
    "wait_until",
]


def test_all_lists_exactly_the_public_names_sorted() -> None:
    assert helpers.__all__ == EXPECTED
    assert helpers.__all__ == sorted(helpers.__all__)


def test_every_exported_name_is_importable() -> None:
    namespace: dict[str, object] = {}
    exec("from helpers import *", namespace)
    for name in EXPECTED:
        assert getattr(importlib.import_module("helpers"), name) is namespace[name]
    assert set(namespace) - {"__builtins__"} == set(EXPECTED)


def test_exports_are_the_kits_own_objects() -> None:
    for name in EXPECTED:
        obj = getattr(helpers, name)
        assert obj.__module__.startswith("helpers."), (name, obj.__module__)
        assert obj.__doc__, f"{name} has no docstring"


def test_every_kit_error_is_a_polling_lab_error() -> None:
    for name in ("PollError", "ServerNotReady", "ServerUnavailable", "RedisMissing"):
        assert issubclass(getattr(helpers, name), helpers.PollingLabError)
