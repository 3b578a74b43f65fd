"""Section 5 of notebook 08: 1, 2 and 4 servers on one broker, each holding many polls.

    hold_and_fanout(redis, servers=2, polls_per_server=1000)   # -> ScalingRow

Each server gets its own swarm, straight to its port: the table measures the servers and
Redis, not the one-process gateway, which in production runs on machines of its own.
"""

from __future__ import annotations

import math
import time

from helpers.cluster import launch_cluster
from helpers.metrics import Metrics, percentile
from helpers.processes import total_cpu_seconds
from helpers.redis_server import RedisServer
from helpers.sharing.lessons import broker_options, wait_held
from helpers.sharing.results import ScalingRow
from helpers.swarm import Swarm

HOLD_S = 30.0  # longer than a whole run: every poll waits until a publish answers it


def _delivered(metrics: Metrics, event_id: int) -> list[float]:
    return [d.received_at for d in list(metrics.deliveries) if d.event_id == event_id]


def hold_and_fanout(redis: RedisServer, servers: int, polls_per_server: int, *,
                    publishes: int = 3, timeout: float = 20.0) -> ScalingRow:
    """`servers` on `redis`, `polls_per_server` held on each, then `publishes` events one by one.

    For each event: the last client's receive time minus the event's timestamp (its fan-out).
    Raises TimeoutError if the polls are not all held within `timeout` seconds.
    """
    total = servers * polls_per_server
    metrics = Metrics()
    with launch_cluster(servers, **broker_options(redis)) as cluster:
        last = int(cluster.servers[0].stats()["last_event_id"])
        swarms = [Swarm(s.url, polls_per_server, "long", hold=HOLD_S, metrics=metrics,
                        last_event_id=last, name=f"s{k}") for k, s in enumerate(cluster.servers)]
        try:
            for swarm in swarms:
                swarm.start()
            held = wait_held(cluster.servers, total, timeout)
            if held < total:
                raise TimeoutError(f"only {held} of {total} polls were held after {timeout:g} s; "
                                   "the machine may be too busy: try fewer polls per server")
            pids = [s.pid for s in cluster.servers]
            cpu_before = total_cpu_seconds(pids)
            fanouts: list[float] = []
            for k in range(publishes):
                event = cluster.servers[k % servers].trigger(f"scale {k + 1}")
                deadline = time.monotonic() + timeout
                while len(got := _delivered(metrics, int(event["id"]))) < total and \
                        time.monotonic() < deadline:
                    time.sleep(0.02)
                if len(got) == total:
                    fanouts.append(1000 * (max(got) - float(event["timestamp"])))
                wait_held(cluster.servers, total, timeout)  # every client polls again
            cpu_s = total_cpu_seconds(pids) - cpu_before
        finally:
            for swarm in swarms:
                swarm.stop()
    latencies = sorted(d.latency_s * 1000 for d in metrics.deliveries)
    return ScalingRow(servers=servers, polls_per_server=polls_per_server, held=held,
                      fanout_ms_median=percentile(sorted(fanouts), 50) if fanouts else math.nan,
                      p50_ms=percentile(latencies, 50), server_cpu_s=cpu_s,
                      missing=publishes * total - len(latencies))
