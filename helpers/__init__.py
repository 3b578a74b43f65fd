"""Polling Lab's helpers: everything a notebook imports, and nothing it has to define.

    from helpers import launch, LongPollClient

    with launch("asyncio") as server:
        with LongPollClient(server.url, hold=10) as client:
            server.trigger("hello")

At a workshop with a shared server, `connect(url, token)` takes the place of `launch(...)`.
This module exports the names every lesson shares; a single lesson's tools are imported from
their own packages: `helpers.compare` (notebook 04), `helpers.scaling` (05), `helpers.faults` (06),
`helpers.delivery` (07) and `helpers.sharing` (08).

`Panel` is imported on first use (PEP 562), so that code that never shows a widget (a script, a
test, `python -m bench`) does not import ipywidgets; so are the Redis helpers (`launch_redis`,
`RedisServer`, `redis_available`, `RedisMissing`), so that only the broker lessons import redis,
and `launch_cluster` (notebook 08).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from helpers.clients import LongPollClient, ShortPollClient, backoff_delay
from helpers.env import check_environment
from helpers.errors import PollError, PollingLabError, ServerNotReady, ServerUnavailable
from helpers.exercises import check, check_client
from helpers.experiment import Experiment, Settings, headless, measure, wait_until
from helpers.launcher import Server, launch
from helpers.metrics import Metrics
from helpers.notebook import clean_up, show_code
from helpers.remote import connect
from helpers.streams import SSEClient, WebSocketClient
from helpers.swarm import Swarm

if TYPE_CHECKING:
    from helpers.cluster import launch_cluster
    from helpers.panel import Panel
    from helpers.redis_server import RedisMissing, RedisServer, launch_redis, redis_available

_REDIS_NAMES = ("RedisMissing", "RedisServer", "launch_redis", "redis_available")

__all__ = [
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


def __getattr__(name: str) -> Any:
    """Import the widget panel only when it is asked for (`from helpers import Panel`)."""
    if name == "Panel":
        from helpers.panel import Panel

        return Panel
    if name in _REDIS_NAMES:
        from helpers import redis_server

        return getattr(redis_server, name)
    if name == "launch_cluster":
        from helpers.cluster import launch_cluster

        return launch_cluster
    raise AttributeError(f"module 'helpers' has no attribute {name!r}")
