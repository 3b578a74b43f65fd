"""Section 5 of notebook 08: 1, 2 and 4 servers on one broker, each holding many polls.

    four = [*shared.servers, launch("asyncio", **broker)]   # four servers on one broker
    hold_and_fanout(four, servers=2, polls_per_server=1000)  # -> ScalingRow

The first `servers` of the list each get their own swarm, straight to their port (the
others stay idle): the table measures the servers and Redis, not the one-process gateway,
which in production runs on machines of its own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from helpers.experiment import wait_until
from helpers.launcher import Server
from helpers.metrics import Metrics, percentile
from helpers.processes import total_cpu_seconds
from helpers.sharing.lessons import wait_held, waiting
from helpers.sharing.results import ScalingRow
from helpers.swarm import Swarm

HOLD_S = 30.0  # longer than a whole run: every poll waits until a publish answers it
#: How long the servers may take to let go of the polls of clients that already stopped: the
#: lessons' clients hold 10 s at most, and a stopped one's poll is normally gone at once.
SETTLE_S = 10.0


def _delivered(metrics: Metrics, event_id: int) -> list[float]:
    return [d.received_at for d in list(metrics.deliveries) if d.event_id == event_id]


def hold_and_fanout(pool: Sequence[Server], servers: int, polls_per_server: int, *,
                    publishes: int = 3, timeout: float | None = None,
                    settle_s: float = SETTLE_S) -> ScalingRow:
    """`polls_per_server` held on each of the first `servers` of `pool` (servers on one
    broker), then `publishes` events one by one.

    For each event: the last client's receive time minus the event's timestamp (its fan-out).
    Raises TimeoutError if the polls are not all held within `timeout` seconds (by default
    10 s plus 1 s per 100 polls), and RuntimeError if polls of other clients are still held on
    those servers after `settle_s` seconds.
    """
    used = list(pool[:servers])
    if len(used) < servers:
        raise ValueError(f"the pool has {len(used)} servers, not {servers}")
    total = servers * polls_per_server
    # One kernel opening thousands of connections on a shared 2-core machine needs time:
    # 10 s, plus 1 s per 100 polls, unless the caller says otherwise.
    timeout = timeout if timeout is not None else 10.0 + total / 100
    metrics = Metrics()
    _wait_released(used, settle_s)  # the crowd's count must be the crowd's alone
    last = int(used[0].stats()["last_event_id"])
    swarms = [Swarm(s.url, polls_per_server, "long", hold=HOLD_S, metrics=metrics,
                    last_event_id=last, name=f"s{k}") for k, s in enumerate(used)]
    try:
        for server, swarm in zip(used, swarms, strict=True):
            # one server's crowd at a time: thousands of connects at once overflow the
            # listen queues of a busy machine, and the retries then take longer still
            swarm.start()
            wait_held([server], polls_per_server, timeout)
        held = wait_held(used, total, timeout)
        if held < total:
            raise TimeoutError(f"only {held} of {total} polls were held after {timeout:g} s; "
                               "the machine may be too busy: try fewer polls per server")
        pids = [s.pid for s in used]
        cpu_before = total_cpu_seconds(pids)
        fanouts = []
        for k in range(publishes):
            fanouts.append(_fan_out(used[k % servers], metrics, total, f"scale {k + 1}",
                                    timeout))
            wait_held(used, total, timeout)  # every client polls again before the next one
        cpu_s = total_cpu_seconds(pids) - cpu_before
    finally:
        for swarm in swarms:
            swarm.stop()
    latencies = sorted(d.latency_s * 1000 for d in metrics.deliveries)
    done = sorted(f for f in fanouts if not math.isnan(f))
    return ScalingRow(servers=servers, polls_per_server=polls_per_server, held=held,
                      fanout_ms_median=percentile(done, 50) if done else math.nan,
                      p50_ms=percentile(latencies, 50), server_cpu_s=cpu_s,
                      missing=publishes * total - len(latencies))


def _wait_released(servers: Sequence[Server], timeout: float) -> None:
    """Wait until `servers` hold no polls; say what to do if other clients still hold some.

    A client that stopped just before (an earlier run, an earlier cell) may still have a poll
    held for a moment; counted as the crowd's, it would make the crowd look held before it is.
    """
    if not wait_until(lambda: sum(waiting(servers)) == 0, timeout, interval=0.05):
        raise RuntimeError(
            f"the servers still hold {sum(waiting(servers))} polls of other clients after "
            f"{timeout:g} s, and they would be counted as this crowd's: stop whatever else "
            "polls them (a panel's Stop button, a swarm's stop()), then run this again")


def _fan_out(server: Server, metrics: Metrics, total: int, message: str,
             timeout: float) -> float:
    """Publish one event on `server`; ms until the last of `total` polls had it (NaN: never)."""
    event = server.trigger(message)
    deadline = time.monotonic() + timeout
    while len(got := _delivered(metrics, int(event["id"]))) < total and \
            time.monotonic() < deadline:
        time.sleep(0.02)
    return 1000 * (max(got) - float(event["timestamp"])) if len(got) == total else math.nan
