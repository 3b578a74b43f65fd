"""Notebook 06's engine. Faults on purpose: break a running setup the ways production breaks it.

    restart_server(server)          # a deploy: held polls get 204, the port is down a moment
    crash_server(server)            # kill -9: held polls get no answer at all
    kill_clients(swarm, 10)         # ten clients die mid-request and come back
    cut_connections(proxy)          # the proxy drops every connection at once
    stall_server(server, 2.0)       # the server freezes for 2 s (SIGSTOP, then SIGCONT)

`FaultPanel` puts the same calls behind buttons. `reconnect_storm()` measures what a restart
under hundreds of clients does with each backoff policy, `Publisher` keeps events flowing while
you break things, and `delivery_report()` checks afterwards that nothing was lost.

Three clients here are deliberately wrong, to show a failure before its fix:
`WatchedLongPollClient(read_timeout=...)` accepts a read timeout shorter than the hold,
`GatewayBlindClient` backs off on a proxy's 504 as on an error, and `StreamBlindClient` ignores
`X-Stream-Id` the way the article's client does.

One module per job: `actions` (the faults), `publisher` (events while you break things, and the
check that none was lost), `storm` (a reconnect storm, measured), `wrong_clients` (the
deliberately wrong clients) and `panel` (`FaultPanel`, imported on first use, PEP 562, so that
`from helpers.faults import reconnect_storm` does not import ipywidgets).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from helpers.faults.actions import (
    crash_server,
    cut_connections,
    kill_clients,
    proxy_stats,
    restart_server,
    stall_server,
)
from helpers.faults.publisher import Publisher, delivery_report, ids_by_client
from helpers.faults.storm import Storm, rate_per_bin, reconnect_storm
from helpers.faults.wrong_clients import (
    GatewayBlindClient,
    StreamBlindClient,
    WatchedLongPollClient,
)

if TYPE_CHECKING:
    from helpers.faults.panel import FaultPanel

__all__ = [
    "FaultPanel",
    "GatewayBlindClient",
    "Publisher",
    "Storm",
    "StreamBlindClient",
    "WatchedLongPollClient",
    "crash_server",
    "cut_connections",
    "delivery_report",
    "ids_by_client",
    "kill_clients",
    "proxy_stats",
    "rate_per_bin",
    "reconnect_storm",
    "restart_server",
    "stall_server",
]


def __getattr__(name: str) -> Any:
    """Import the widget panel only when it is asked for (`from helpers.faults import ...`)."""
    if name == "FaultPanel":
        from helpers.faults.panel import FaultPanel

        return FaultPanel
    raise AttributeError(f"module 'helpers.faults' has no attribute {name!r}")
