"""A proxy's 502/504 that ends a long poll's hold is an empty poll, not an error (issue 15).

Real servers behind the bundled proxy, whose read timeout (1 s) is shorter than the hold (5 s),
so every quiet hold ends in the proxy's 504, as behind nginx with a short `proxy_read_timeout`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from helpers import LongPollClient, Metrics, Server
from helpers.faults import GatewayBlindClient
from helpers.swarm import Swarm

QUIET_S = 3.6  # three proxy timeouts of 1 s, and most of a fourth


def through_proxy(launched: Callable[..., Server]) -> tuple[Server, Server]:
    server = launched("asyncio", hold=5)
    return server, launched("proxy", upstream=server.url, read_timeout=1)


def latest_latency_ms(metrics: Metrics) -> float:
    return metrics.latencies_ms()[-1][1]


def test_client_repolls_at_once_after_the_proxys_504(launched: Callable[..., Server],
                                                      waiter: Callable[..., None]) -> None:
    server, proxy = through_proxy(launched)
    # A large backoff base makes the old behaviour unmistakable: three errors would wait
    # up to 0.5 * 2**2 = 2 s before the next poll.
    with LongPollClient(proxy.url, hold=5, backoff_base=0.5, backoff_cap=5.0) as client:
        server.trigger("before")
        waiter(lambda: client.last_event_id == 1, 5, "the first event")
        time.sleep(QUIET_S)
        server.trigger("after the quiet spell")
        waiter(lambda: client.last_event_id == 2, 5, "the event after the quiet spell")
        summary = client.metrics.summary()
    assert summary["gateway_timeouts"] >= 3, summary
    assert summary["errors"] == 0, summary["last_error"]
    assert (summary["events"], summary["missing"], summary["duplicates"]) == (2, 0, 0), summary
    assert latest_latency_ms(client.metrics) < 500, client.metrics.latencies_ms()


def test_swarm_repolls_at_once_after_the_proxys_504(launched: Callable[..., Server],
                                                     waiter: Callable[..., None]) -> None:
    server, proxy = through_proxy(launched)
    with Swarm(proxy.url, 5, "long", hold=5, backoff_base=0.5, backoff_cap=5.0) as swarm:
        time.sleep(QUIET_S)
        for i in range(3):
            server.trigger(f"after the quiet spell {i}")
        waiter(lambda: len(swarm.metrics.deliveries) == 15, 5, "three events at five clients")
    summary = swarm.metrics.summary()
    assert summary["gateway_timeouts"] >= 15, summary
    assert summary["errors"] == 0, summary["last_error"]
    assert (summary["missing"], summary["duplicates"]) == (0, 0), summary
    assert summary["latency_ms_max"] < 500, summary


def test_a_quick_502_from_a_proxy_without_upstream_is_still_an_error(
        launched: Callable[..., Server], waiter: Callable[..., None]) -> None:
    server, proxy = through_proxy(launched)
    server.stop()  # nothing listens upstream now: the proxy answers 502 at once
    with LongPollClient(proxy.url, hold=5, backoff_base=0.05, backoff_cap=0.2) as client:
        waiter(lambda: client.metrics.errors >= 3, 5, "three errors")
    assert client.metrics.gateway_timeouts == 0
    assert "502" in (client.metrics.last_error or "")


def test_notebook_06s_gateway_blind_client_backs_off_on_each_504(
        launched: Callable[..., Server], waiter: Callable[..., None]) -> None:
    _, proxy = through_proxy(launched)
    blind = GatewayBlindClient(proxy.url, hold=5, backoff_base=0.2, backoff_cap=5.0)
    assert [blind.retry_delay(n) for n in (1, 2, 3, 6)] == [0.2, 0.4, 0.8, 5.0]
    with blind:
        waiter(lambda: blind.outcomes["504"] >= 3, 8, "three 504s")
    assert blind.metrics.errors >= 3 and blind.metrics.gateway_timeouts == 0
    ends = [t for t, outcome in blind.timeline if outcome == "504"]
    # 1 s held, then waits of 0.2 and 0.4 s: the gaps between the 504s grow.
    assert 1.1 < ends[1] - ends[0] < ends[2] - ends[1] < 1.9, ends
