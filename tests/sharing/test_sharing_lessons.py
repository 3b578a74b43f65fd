"""helpers/sharing/'s measurements on real servers, a real gateway and a real redis-server.

Bounded: a few servers, tens of clients, tens of events each. Without redis-server the Redis
tests skip, except under CI (env CI set), where they must run.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from service_check import need_redis

from helpers.cluster import Cluster, launch_cluster
from helpers.experiment import wait_until
from helpers.launcher import launch
from helpers.redis_server import RedisServer, launch_redis
from helpers.sharing import (
    broker_options,
    fanout,
    gateway_guards,
    hold_and_fanout,
    kill_mid_hold,
    lost_event_bug,
    pubsub_cut,
    redis_restarts,
)
from helpers.sharing.lessons import waiting

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    need_redis()
    server = launch_redis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def shared(redis: RedisServer, shared_pids: set[int]) -> Iterator[Cluster]:
    """Three servers on `redis` behind a gateway, kept for the module (faults get their own)."""
    with launch_cluster(3, **broker_options(redis)) as cluster:
        pids = {s.pid for s in [*cluster.servers, cluster.gateway]}
        shared_pids.update(pids)
        try:
            yield cluster
        finally:
            shared_pids.difference_update(pids)


def test_in_memory_servers_behind_the_gateway_lose_and_repeat_events() -> None:
    with launch_cluster(3) as memory:
        tally = lost_event_bug(memory, clients=10, events=12)
    # The bug needs the publishes on more than one server, not on all three: the gateway's
    # rotation also turns for every poll, and these clients re-poll all the time (a reset each
    # time they hop servers), so where each publish lands is close to chance. By chance alone, all
    # 12 would miss one of the 3 servers in about 2 % of runs (3 x (2/3)^12); it happened once
    # here, under make unit (by_server {'3093': 6, '3091': 6}).
    assert tally.published == 12 and len(tally.by_server) >= 2, tally
    # Most clients miss or repeat something; not all: under load (a make test beside it) one
    # client of 10 once had its polls reach the servers in an order that gave it all 12 once.
    assert tally.complete < tally.clients / 2 and tally.lost + tally.duplicates > 0, tally
    assert tally.stream_resets > 0, tally


def test_pubsub_alone_loses_events_and_the_log_does_not(redis: RedisServer,
                                                         shared: Cluster) -> None:
    with launch_cluster(2, **broker_options(redis, "relay")) as relay:
        cut_relay = pubsub_cut(redis, relay, clients=4, before=3, during=6, after=3)
    cut_log = pubsub_cut(redis, shared, clients=4, before=3, during=6, after=3)
    assert cut_relay.mode == "relay" and cut_log.mode == "log"
    assert cut_relay.cut_subscriptions >= 1 and cut_relay.tally.lost >= 1, cut_relay
    assert cut_log.cut_subscriptions >= 1, cut_log
    assert (cut_log.tally.lost, cut_log.tally.duplicates, cut_log.tally.complete) == (0, 0, 4)


def test_broker_servers_deliver_everything_once(shared: Cluster) -> None:
    result = fanout(shared, clients=10, events=9)
    assert len(result.tally.by_server) == 3, result.tally
    assert (result.tally.lost, result.tally.duplicates, result.tally.complete) == (0, 0, 10)
    assert result.events == 9 and result.fanout_ms_median >= 0


@pytest.mark.slow
def test_a_killed_server_costs_its_clients_nothing(redis: RedisServer) -> None:
    with launch_cluster(3, **broker_options(redis)) as cluster:
        killed = kill_mid_hold(cluster, clients=12, events=6)
        assert all(s.running for s in cluster.servers)  # started again, for the next user
    assert killed.held_on_killed >= 1, killed
    assert (killed.tally.lost, killed.tally.duplicates, killed.tally.complete) == (0, 0, 12)
    assert killed.out_of_rotation_s < 1.5 and killed.resent_by_gateway >= 1, killed


@pytest.mark.slow
def test_a_redis_crash_keeps_the_log_only_with_aof() -> None:
    need_redis()
    aof, none = redis_restarts((True, False), events=3)
    assert aof.crashed and aof.survived == 3 and aof.stream_after == aof.stream_before, aof
    assert aof.first_id_after == 4 and aof.client_stream_resets == 0, aof
    assert none.survived == 0 and none.stream_after != none.stream_before, none
    assert none.first_id_after == 1 and none.client_stream_resets >= 1, none


@pytest.mark.serial
def test_the_gateway_guards_publishes_and_limits_requests() -> None:
    with launch("asyncio") as server:
        guards = gateway_guards([server], rate_limit=20, burst=50, poll_s=2.0)
    assert (guards.without_token, guards.with_token, guards.read_without_token) == (401, 201, 200)
    assert guards.limited >= 1 and guards.retry_after_s >= 1, guards
    assert guards.client_429s >= 1 and guards.client_min_wait_s >= 0.9 * guards.retry_after_s
    assert guards.client_events == 3, guards


@pytest.mark.slow
def test_two_servers_hold_their_polls_and_fan_out(shared: Cluster) -> None:
    # A poll of another client, held for a second (an earlier test once left six on these
    # servers): the crowd's count must not include it.
    server = shared.servers[0]
    leftover = socket.create_connection((server.host, server.port))
    leftover.sendall(f"GET /poll_for_updates?last_event_id={server.stats()['last_event_id']}"
                     f"&timeout=30 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert wait_until(lambda: sum(waiting(shared.servers)) == 1, 5.0)
    with pytest.raises(RuntimeError, match="still hold 1 polls of other clients"):
        hold_and_fanout(shared.servers, 2, 50, publishes=2, settle_s=0.3)
    threading.Timer(1.0, leftover.close).start()
    row = hold_and_fanout(shared.servers, 2, 50, publishes=2)
    assert row.held == 100 and row.missing == 0, row
    assert row.fanout_ms_median > 0 and row.server_cpu_s >= 0, row
