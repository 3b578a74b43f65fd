"""helpers/sharing/'s measurements on real servers, a real gateway and a real redis-server.

Bounded: a few servers, tens of clients, tens of events each. Without redis-server the Redis
tests skip, except under CI (env CI set), where they must run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from helpers.redis_server import RedisServer, launch_redis, redis_available
from helpers.sharing import (
    fanout,
    gateway_guards,
    hold_and_fanout,
    kill_mid_hold,
    lost_event_bug,
    pubsub_cut,
    redis_restart,
)

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    if not redis_available() and not os.environ.get("CI"):
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = launch_redis()
    try:
        yield server
    finally:
        server.stop()


def test_in_memory_servers_behind_the_gateway_lose_events() -> None:
    tally = lost_event_bug(3, clients=10, events=12)
    assert tally.published == 12 and len(tally.by_server) == 3, tally
    assert tally.lost > 0 and tally.complete < tally.clients, tally


def test_pubsub_alone_loses_events_and_the_log_does_not(redis: RedisServer) -> None:
    relay = pubsub_cut(redis, "relay", clients=4, before=3, during=6, after=3)
    log = pubsub_cut(redis, "log", clients=4, before=3, during=6, after=3)
    assert relay.cut_subscriptions >= 1 and relay.tally.lost >= 1, relay
    assert log.cut_subscriptions >= 1, log
    assert (log.tally.lost, log.tally.duplicates, log.tally.complete) == (0, 0, 4), log


def test_broker_servers_deliver_everything_once(redis: RedisServer) -> None:
    result = fanout(redis, 3, clients=10, events=9)
    assert len(result.tally.by_server) == 3, result.tally
    assert (result.tally.lost, result.tally.duplicates, result.tally.complete) == (0, 0, 10)
    assert result.events == 9 and result.fanout_ms_median >= 0


@pytest.mark.slow
def test_a_killed_server_costs_its_clients_nothing(redis: RedisServer) -> None:
    killed = kill_mid_hold(redis, clients=12, events=6)
    assert killed.held_on_killed >= 1, killed
    assert (killed.tally.lost, killed.tally.duplicates, killed.tally.complete) == (0, 0, 12)
    assert killed.out_of_rotation_s < 1.5, killed


@pytest.mark.slow
def test_a_redis_restart_keeps_the_log_only_with_aof() -> None:
    if not redis_available() and not os.environ.get("CI"):
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    aof = redis_restart(appendonly=True, events=3)
    none = redis_restart(appendonly=False, events=3)
    assert aof.survived == 3 and aof.stream_after == aof.stream_before, aof
    assert aof.first_id_after == 4, aof
    assert none.survived == 0 and none.stream_after != none.stream_before, none
    assert none.client_stream_resets >= 1, none


def test_the_gateway_guards_publishes_and_limits_requests() -> None:
    guards = gateway_guards(rate_limit=20, burst=50, poll_s=2.0)
    assert (guards.without_token, guards.with_token, guards.read_without_token) == (401, 201, 200)
    assert guards.limited >= 1 and guards.retry_after_s >= 1, guards
    assert guards.client_429s >= 1 and guards.client_min_wait_s >= 0.9 * guards.retry_after_s
    assert guards.client_events == 3, guards


@pytest.mark.slow
def test_two_servers_hold_their_polls_and_fan_out(redis: RedisServer) -> None:
    row = hold_and_fanout(redis, 2, 50, publishes=2)
    assert row.held == 100 and row.missing == 0, row
    assert row.fanout_ms_median > 0 and row.server_cpu_s >= 0, row
