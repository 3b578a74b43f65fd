"""Fixtures for the broker tests: a real redis-server, and asyncio servers sharing it.

Without redis-server these tests are skipped with the install command, except in CI (env CI
set), where a missing redis-server is a failure: CI installs it, so it must be there.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from service_check import need_redis

from helpers import Server, launch
from helpers.redis_server import RedisServer, launch_redis


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server (no persistence) for one test, stopped by pid afterwards."""
    need_redis()
    with launch_redis() as server:
        yield server


@pytest.fixture
def on_broker(redis_server: RedisServer) -> Iterator[Callable[..., Server]]:
    """`on_broker(**options)`: an asyncio server on `redis_server`, under one key per test.

    Every server a test starts this way shares the log; all are stopped when it ends.
    """
    key = f"test-{uuid.uuid4().hex[:8]}"
    servers: list[Server] = []

    def start(**options: Any) -> Server:
        options = {"broker": redis_server.url, "broker_key": key, "hold": 10, **options}
        server = launch("asyncio", **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
