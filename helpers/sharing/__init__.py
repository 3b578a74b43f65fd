"""Notebook 08's engine. Several servers behind a gateway: the lost-event bug, and the fix.

    lost_event_bug(memory)                  # 3 in-memory servers: events lost, duplicated
    pubsub_cut(redis, relay)                # notifications alone lose what a cut missed
    fanout(shared)                          # one log in Redis: all delivered, and how fast
    kill_mid_hold(shared)                   # a server dies; its clients lose nothing
    redis_restarts()                        # what a crash of Redis keeps, AOF on and off
    gateway_guards(one.servers)             # the token and the rate limit at a gateway
    hold_and_fanout(four, 2, 1000)          # 2 of four servers holding 1,000 polls each

`memory`, `relay`, `shared` and `one` are clusters from `helpers.cluster.launch_cluster`,
on Redis with `broker_options(redis)` (or `broker_options(redis, "relay")`); `four` is a list
of servers on one broker.

Every number comes from real servers, a real gateway and a real `redis-server`, counted by
message per client (`Audience`, `Tally`). `redis_ready()` says how to install Redis when it
is missing (and fails under CI). `SharingPanel` is imported on first use (PEP 562), so that
`from helpers.sharing import fanout` does not import ipywidgets.

One module per job: `audience` (the clients, the publishes and the counting), `lessons`
(sections 1-3), `faults` (section 4), `scaling` (section 5), `needs` (is Redis here?),
`results` (the typed records), `exercise` (the exercise's check) and `panel`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from helpers.sharing.audience import Audience, Publish, Publishing, count_client, publish
from helpers.sharing.exercise import check_counting
from helpers.sharing.faults import (
    gateway_guards,
    kill_mid_hold,
    redis_restart,
    redis_restarts,
    upstream_health,
)
from helpers.sharing.lessons import broker_options, fanout, lost_event_bug, pubsub_cut
from helpers.sharing.needs import redis_ready
from helpers.sharing.results import (
    GatewayGuards,
    KilledServer,
    Latency,
    PubSubCut,
    RedisRestart,
    ScalingRow,
    Tally,
)
from helpers.sharing.scaling import hold_and_fanout

if TYPE_CHECKING:
    from helpers.sharing.panel import SharingPanel

__all__ = [
    "Audience",
    "GatewayGuards",
    "KilledServer",
    "Latency",
    "PubSubCut",
    "Publish",
    "Publishing",
    "RedisRestart",
    "ScalingRow",
    "SharingPanel",
    "Tally",
    "broker_options",
    "check_counting",
    "count_client",
    "fanout",
    "gateway_guards",
    "hold_and_fanout",
    "kill_mid_hold",
    "lost_event_bug",
    "publish",
    "pubsub_cut",
    "redis_ready",
    "redis_restart",
    "redis_restarts",
    "upstream_health",
]


def __getattr__(name: str) -> Any:
    """Import the widget panel only when it is asked for (`from helpers.sharing import ...`)."""
    if name == "SharingPanel":
        from helpers.sharing.panel import SharingPanel

        return SharingPanel
    raise AttributeError(f"module 'helpers.sharing' has no attribute {name!r}")
