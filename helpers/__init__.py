"""Polling Lab's helpers: everything a notebook imports, and nothing it has to define.

    from helpers import launch, LongPollClient

    with launch("asyncio") as server:
        with LongPollClient(server.url, hold=10) as client:
            server.trigger("hello")
"""

from helpers.clients import LongPollClient, ShortPollClient, backoff_delay
from helpers.errors import PollError, PollingLabError, ServerNotReady, ServerUnavailable
from helpers.launcher import Server, launch
from helpers.metrics import Metrics
from helpers.swarm import Swarm

__all__ = [
    "LongPollClient",
    "Metrics",
    "PollError",
    "PollingLabError",
    "Server",
    "ServerNotReady",
    "ServerUnavailable",
    "ShortPollClient",
    "Swarm",
    "backoff_delay",
    "launch",
]
