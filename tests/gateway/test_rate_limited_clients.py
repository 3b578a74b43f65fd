"""The kit's clients behind a rate-limiting gateway: a 429 is waited out for its Retry-After
(plus a small jitter), counted in Metrics as `rate_limited`, and is neither an error nor a
reason to back off further."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest
import requests

from helpers import LongPollClient, Server, SSEClient, Swarm, WebSocketClient
from helpers.clients import RATE_LIMIT_JITTER_S, rate_limited_delay
from helpers.errors import RateLimited, ServerUnavailable
from helpers.http import error_for


def test_a_429_is_rate_limited_with_its_retry_after() -> None:
    exc = error_for(429, {"error": "rate_limited", "detail": "slow down"}, {"Retry-After": "3"})
    assert isinstance(exc, RateLimited) and isinstance(exc, ServerUnavailable)
    assert exc.retry_after == 3.0 and exc.status == 429 and "slow down" in str(exc)
    assert error_for(429, None, {}).retry_after == 1.0  # none given: a second
    assert error_for(429, None, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}).retry_after == 1
    rng = random.Random(7)
    delays = [rate_limited_delay(exc, rng) for _ in range(200)]
    assert 3.0 <= min(delays) and max(delays) <= 3.0 + RATE_LIMIT_JITTER_S
    assert max(delays) - min(delays) > RATE_LIMIT_JITTER_S / 2  # jittered, not all alike


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.live
def test_a_long_poll_client_waits_out_429s_and_keeps_receiving(
        launched: Callable[..., Server]) -> None:
    server = launched("asyncio")
    gateway = launched("proxy", upstream=server.url, rate_limit=4, rate_burst=4)
    client = LongPollClient(gateway.url, hold=0)  # answered at once: it asks as fast as it can
    with client:
        assert wait_for(lambda: client.metrics.rate_limited >= 1, 5)
        time.sleep(2.5)
        server.trigger("through the limit")
        assert wait_for(lambda: client.last_event_id == 1, 5)
        assert client.running
    summary = client.metrics.summary()
    assert summary["errors"] == 0 and summary["rate_limited"] >= 2
    # Honouring Retry-After (1 s): a refusal about once a second, not hundreds of them.
    elapsed = summary["elapsed_s"]
    assert summary["rate_limited"] <= elapsed + 1, summary
    assert summary["requests"] <= 4 * elapsed + 4 + summary["rate_limited"] + 2, summary


def exhaust(url: str) -> None:
    """Use up this machine's bucket (every loopback client shares 127.0.0.1's)."""
    with requests.Session() as session:
        for _ in range(20):
            if session.get(url + "/events", timeout=5).status_code == 429:
                return
    pytest.fail("the gateway never answered 429")


@pytest.mark.live
@pytest.mark.parametrize("client_class", [SSEClient, WebSocketClient])
def test_a_stream_client_waits_out_a_429_to_its_connect(
        client_class: type[SSEClient] | type[WebSocketClient],
        launched: Callable[..., Server]) -> None:
    server = launched("asyncio")
    gateway = launched("proxy", upstream=server.url, rate_limit=1, rate_burst=1)
    exhaust(gateway.url)
    began = time.monotonic()
    client = client_class(gateway.url)
    with client:
        assert wait_for(lambda: client.metrics.rate_limited >= 1, 5)
        assert wait_for(lambda: client.connections >= 2, 5)  # refused, then connected
        waited = time.monotonic() - began
        time.sleep(0.3)
        server.trigger("after the wait")
        assert wait_for(lambda: client.last_event_id == 1, 5)
    assert waited >= 1.0  # Retry-After: 1
    assert client.metrics.errors == 0 and client.error is None


@pytest.mark.live
@pytest.mark.parametrize("strategy", ["long", "sse"])
def test_a_swarm_waits_out_429s(strategy: str, launched: Callable[..., Server]) -> None:
    server = launched("asyncio")
    gateway = launched("proxy", upstream=server.url, rate_limit=3, rate_burst=3)
    exhaust(gateway.url)
    # 5 clients polling at most once a second each share 127.0.0.1's 3 requests a second
    with Swarm(gateway.url, 5, strategy, hold=1) as swarm:  # type: ignore[arg-type]
        assert wait_for(lambda: swarm.metrics.rate_limited >= 2, 5)
        time.sleep(2.0)
        server.trigger("to the swarm")
        assert wait_for(lambda: all(c.last_event_id == 1 for c in swarm.cursors), 8)
    summary = swarm.metrics.summary()
    assert summary["errors"] == 0 and not swarm.errors
    # 5 clients, each refused at most about once a second while it honours Retry-After
    assert summary["rate_limited"] <= 5 * (summary["elapsed_s"] + 1), summary


@pytest.mark.live
def test_a_client_id_gets_a_bucket_of_its_own(launched: Callable[..., Server]) -> None:
    server = launched("asyncio")
    gateway = launched("proxy", upstream=server.url, rate_limit=1, rate_burst=1)
    exhaust(gateway.url)  # the bucket of 127.0.0.1 is empty now
    with LongPollClient(gateway.url, hold=0.2, client_id="learner-7") as client:
        assert wait_for(lambda: client.metrics.empty_responses >= 1, 5)  # its first poll: 204
    with LongPollClient(gateway.url, hold=0.2) as anonymous:
        assert wait_for(lambda: anonymous.metrics.rate_limited >= 1, 5)  # the shared bucket
    stats = requests.get(gateway.url + "/_proxy/stats", timeout=5).json()
    assert stats["statuses"]["204"] >= 1
