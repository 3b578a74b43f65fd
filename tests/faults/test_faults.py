"""helpers/faults.py, and the kit's promise under faults: nothing lost, nothing duplicated.

The big test runs short- and long-poll swarms through the bundled proxy while events are
published at random intervals, clients are killed and restarted, the proxy cuts every connection
and the server restarts. Every client must end with every id exactly once, in order.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from helpers import Metrics, PollError, Server, ServerUnavailable, Swarm
from helpers.faults import (
    FaultPanel,
    Publisher,
    Storm,
    StreamBlindClient,
    WatchedLongPollClient,
    crash_server,
    cut_connections,
    delivery_report,
    ids_by_client,
    kill_clients,
    proxy_stats,
    rate_per_bin,
    reconnect_storm,
    restart_server,
    stall_server,
)
from helpers.metrics import percentile

pytestmark = pytest.mark.live

EVENTS = 400
KILLS = 50  # one kill per client, on average
CUTS = 3
RESTARTS = 2
CLIENTS = 25  # of each strategy


@pytest.fixture
def wait_for(waiter: Callable[..., None]) -> Callable[..., None]:
    """`waiter` (tests/conftest.py), checking every 50 ms."""
    return functools.partial(waiter, interval=0.05)


def ended(swarm: Swarm, moment: float, n: int) -> bool:
    """Have `n` requests sent before `moment` ended (recorded with their outcome)?"""
    return sum(a.sent_at < moment for a in swarm.attempts) >= n


def chaos(swarms: list[Swarm], proxy: Server, rng: random.Random, done: dict[str, int]) -> None:
    """KILLS client kills (each restarted at once) and CUTS proxy cuts, in a random order."""
    actions = ["kill"] * KILLS + ["cut"] * CUTS
    rng.shuffle(actions)
    for action in actions:
        time.sleep(rng.uniform(0.02, 0.18))
        if action == "kill":
            done["kills"] += len(kill_clients(rng.choice(swarms), 1, rng=rng))
        else:
            cut_connections(proxy)
            done["cuts"] += 1


def publish_with_restarts(server: Server, rng: random.Random, done: dict[str, int]) -> None:
    """EVENTS publishes at random intervals; the server restarts after a third and two thirds.

    Restarts happen between publishes, so every publish gets its answer and ids are exactly
    1..EVENTS. The clients, meanwhile, are mid-poll, mid-backoff or mid-restart.
    """
    restart_at = {EVENTS // 3, 2 * EVENTS // 3}
    for n in range(1, EVENTS + 1):
        time.sleep(rng.expovariate(1 / 0.01))
        event = server.trigger(f"event {n}")
        assert event["id"] == n, event
        if n in restart_at:
            restart_server(server)
            done["restarts"] += 1


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["asyncio", "naive"])
def test_nothing_lost_or_duplicated_through_kills_cuts_and_restarts(
        kind: str, launched: Callable[..., Server], tmp_path: Path,
        wait_for: Callable[..., None]) -> None:
    rng = random.Random(20261128)
    options = {"check_interval": 0.05} if kind == "naive" else {}
    server = launched(kind, hold=5, store=f"sqlite:{tmp_path / 'events.db'}", **options)
    proxy = launched("proxy", upstream=server.url, read_timeout=10)
    metrics = Metrics()
    swarms = [
        Swarm(proxy.url, CLIENTS, "long", hold=3, metrics=metrics, backoff_cap=1.0, name="long"),
        Swarm(proxy.url, CLIENTS, "short", interval=0.3, metrics=metrics, backoff_cap=1.0,
              name="short"),
    ]
    done = {"kills": 0, "cuts": 0, "restarts": 0}
    started = time.monotonic()
    try:
        for swarm in swarms:
            swarm.start()
        breaker = threading.Thread(target=chaos, args=(swarms, proxy, rng, done), daemon=True)
        breaker.start()
        publish_with_restarts(server, rng, done)
        breaker.join(60)
        wait_for(lambda: all(c.last_event_id == EVENTS for s in swarms for c in s.cursors), 30,
                 f"every client to reach event {EVENTS}")
    finally:
        for swarm in swarms:
            swarm.stop()
    elapsed = time.monotonic() - started

    names = [c.name for s in swarms for c in s.cursors]
    report = delivery_report(metrics, EVENTS, names)
    cut = proxy_stats(proxy)
    print(f"\n{kind}: {EVENTS} events, {done['kills']} kills, {done['cuts']} cuts "
          f"({cut['connections_cut']} connections), {done['restarts']} restarts, "
          f"{len(names)} clients in {elapsed:.1f} s: {report['complete']} complete, "
          f"lost {report['missing']}, duplicated {report['duplicates']}, gaps reported "
          f"{report['gaps_reported']}, errors retried {report['errors']}, proxy 502s "
          f"{cut['bad_gateways']}")
    assert done == {"kills": KILLS, "cuts": CUTS, "restarts": RESTARTS}, done
    assert report["duplicates"] == 0 and report["missing"] == 0, report
    assert report["gaps_reported"] == 0 and report["stream_resets"] == 0, report
    assert report["complete"] == len(names) == 2 * CLIENTS, report["incomplete"][:5]
    assert report["errors"] > 0, "the faults should have caused (retried) errors"


@pytest.mark.slow
def test_in_memory_restart_and_retention_gaps_are_reported_never_silent(
        launched: Callable[..., Server], wait_for: Callable[..., None]) -> None:
    """An in-memory server forgets on restart, and keeps only `retention` events: every loss
    must show up as a stream reset or a reported gap, never as ids that silently skip."""
    server = launched("asyncio", hold=2, retention=20)
    metrics = Metrics()
    with Swarm(server.url, 20, "long", hold=1, metrics=metrics, backoff_cap=0.5,
               name="long") as swarm:
        for i in range(30):
            server.trigger(f"first stream {i}")
            time.sleep(0.01)
        wait_for(lambda: all(c.last_event_id == 30 for c in swarm.cursors), 10, "event 30")
        restart_server(server)  # a new stream: ids start again at 1
        for i in range(10):
            server.trigger(f"second stream {i}")
        wait_for(lambda: metrics.stream_resets == 20, 10, "every client to reset its cursor")
        wait_for(lambda: all(c.last_event_id == 10 for c in swarm.cursors), 10, "event 10")
        # Two clients fall behind the retention window: down for 2 s while 40 events pass.
        killed = kill_clients(swarm, 2, down_for=2.0)
        for i in range(40):
            server.trigger(f"while they were away {i}")
        wait_for(lambda: all(c.last_event_id == 50 for c in swarm.cursors), 10, "event 50")
    summary = metrics.summary()
    assert summary["missing"] == 0 and summary["duplicates"] == 0, summary
    assert summary["stream_resets"] == 20, summary
    # The log keeps ids 31..50 (retention 20): each returning client was told it missed 11..30.
    assert summary["gaps_reported"] == 2 * 20, summary
    for name, ids in ids_by_client(metrics).items():
        assert ids[:30] == list(range(1, 31)), name
        expected = list(range(1, 11)) + list(range(31, 51)) if name in killed else list(
            range(1, 51))
        assert ids[30:] == expected, name



# --- the fault helpers themselves ---------------------------------------------------------------


def test_rate_per_bin_counts_each_window() -> None:
    assert rate_per_bin([], 0.1) == []
    assert rate_per_bin([0.0, 0.05, 0.1, 0.35], 0.1) == [2, 1, 0, 1]


def test_delivery_report_names_clients_with_holes_or_nothing() -> None:
    metrics = Metrics()
    event = {"timestamp": time.time(), "message": "m"}
    for name, ids in {"whole": [1, 2, 3], "holey": [1, 3]}.items():
        metrics.start_client(name, 0)
        metrics.record_events(name, [{"id": i, **event} for i in ids], time.time())  # type: ignore[misc]
    report = delivery_report(metrics, 3, ["whole", "holey", "silent"])
    assert report["complete"] == 1 and report["clients"] == 3
    assert report["incomplete"] == ["holey", "silent"] and report["missing"] == 1


def test_watched_client_sees_504s_when_the_proxy_gives_up_before_the_hold(
        asyncio_server: Server, launched: Callable[..., Server],
        wait_for: Callable[..., None]) -> None:
    proxy = launched("proxy", upstream=asyncio_server.url, read_timeout=0.5)
    cursor = asyncio_server.stats()["last_event_id"]
    with WatchedLongPollClient(proxy.url, hold=3, last_event_id=cursor,
                               backoff_cap=0.1) as client:
        wait_for(lambda: client.outcomes["504"] >= 2, 5, "two 504s from the proxy")
    assert set(client.outcomes) == {"504"}, client.outcomes
    assert proxy_stats(proxy)["gateway_timeouts"] >= 2


def test_watched_client_with_a_read_timeout_below_the_hold_times_out(
        asyncio_server: Server, wait_for: Callable[..., None]) -> None:
    cursor = asyncio_server.stats()["last_event_id"]
    with WatchedLongPollClient(asyncio_server.url, hold=3, read_timeout=0.4,
                               last_event_id=cursor, backoff_cap=0.1) as client:
        wait_for(lambda: client.outcomes["read timeout"] >= 2, 5, "two read timeouts")
    assert "204" not in client.outcomes and client.metrics.errors >= 2
    assert [t for t, _ in client.timeline] == sorted(t for t, _ in client.timeline)


def test_stream_blind_client_stalls_where_the_kit_client_resets(
        launched: Callable[..., Server], wait_for: Callable[..., None]) -> None:
    server = launched("asyncio", hold=1)
    for i in range(5):
        server.trigger(f"old {i}")
    blind, kit = StreamBlindClient(server.url, hold=1), WatchedLongPollClient(server.url, hold=1)
    with blind, kit:
        wait_for(lambda: blind.last_event_id == kit.last_event_id == 5, 5, "both at event 5")
        restart_server(server)
        for i in range(3):
            server.trigger(f"new {i}")
        wait_for(lambda: kit.last_event_id == 3, 5, "the kit client to reset and catch up")
        time.sleep(1.5)  # the blind client's next answers all come from the new stream
    assert blind.last_event_id == 5 and blind.metrics.summary()["events"] == 5
    assert blind.metrics.stream_resets == 0
    assert kit.metrics.stream_resets == 1 and kit.metrics.summary()["events"] == 8


def test_publisher_publishes_until_its_total(launched: Callable[..., Server]) -> None:
    server = launched("asyncio")
    with Publisher(server, rate=200, total=20) as publisher:
        assert publisher.done.wait(5)
    assert publisher.published == 20 == publisher.last_id == server.stats()["last_event_id"]
    assert publisher.failed == 0
    with pytest.raises(ValueError):
        Publisher(server, rate=0)


def test_crash_gives_held_polls_no_answer_and_stop_gives_them_204(
        launched: Callable[..., Server], wait_for: Callable[..., None]) -> None:
    server = launched("asyncio", hold=30)
    outcomes = {}
    for how in ("crash", "stop"):
        with Swarm(server.url, 20, "long", hold=30, record=True, backoff_base=1,
                   backoff_cap=1) as swarm:
            wait_for(lambda: server.stats()["waiting"] == 20, 10, "20 held polls")
            began = time.time()
            if how == "crash":
                crash_server(server)
            else:
                server.stop()
            wait_for(functools.partial(ended, swarm, began, 20), 5, "every held poll to end")
            held = [a for a in swarm.attempts if a.sent_at < began]
            outcomes[how] = sorted({a.status for a in held})
        server.restart()
    assert outcomes == {"crash": [0], "stop": [204]}, outcomes


def test_stall_freezes_the_server_then_lets_it_carry_on(launched: Callable[..., Server]) -> None:
    server = launched("asyncio")
    server.pause()
    try:
        with pytest.raises(requests.ReadTimeout):
            requests.get(server.url + "/health", timeout=(1, 0.5))
    finally:
        server.resume()
    assert server.health()["status"] == "ok"
    began = time.monotonic()
    stall_server(server, 0.3)
    assert time.monotonic() - began >= 0.3 and server.health()["status"] == "ok"
    server.pause()
    server.stop()  # a paused server still stops (and is reaped) at once
    assert not server.running


def test_fault_panel_buttons_do_what_the_functions_do(launched: Callable[..., Server],
                                                      wait_for: Callable[..., None]) -> None:
    server = launched("asyncio", hold=30)
    proxy = launched("proxy", upstream=server.url)
    with Swarm(proxy.url, 10, "long", hold=30, backoff_cap=0.2) as swarm:
        panel = FaultPanel(server, swarm=swarm, proxy=proxy, kill_n=3, stall_s=0.2)
        wait_for(lambda: server.stats()["waiting"] == 10, 10, "10 held polls")
        panel.kill_button.click()
        assert swarm.kills == 3
        panel.cut_button.click()
        assert proxy_stats(proxy)["cuts"] == 1
        panel.stall_button.click()  # returns at once; a timer resumes the server
        time.sleep(0.4)
        assert server.health()["status"] == "ok"
        stream = server.health()["stream"]
        panel.restart_button.click()
        assert server.health()["stream"] != stream
        assert [a.text.split()[0] for a in panel.actions] == ["killed", "the", "stalled",
                                                              "restarted"]
        assert "stream resets" in panel.counters.value
        panel.close()
    bare = FaultPanel(server)  # nothing to kill or cut: those buttons are disabled
    assert bare.kill_button.disabled and bare.cut_button.disabled
    assert not bare.restart_button.disabled
    bare.close()


def test_fault_panel_start_trigger_stop_as_a_learner_clicks_them(
        launched: Callable[..., Server], wait_for: Callable[..., None]) -> None:
    server = launched("asyncio", hold=30)
    swarm = Swarm(server.url, 10, "long", hold=30, backoff_cap=0.2)
    panel = FaultPanel(server, swarm=swarm, rate=20)
    assert not panel.live and panel.stop_button.disabled
    for round_ in range(2):  # a second Start carries on from the clients' cursors
        panel.start_button.click()
        assert panel.live and panel.start_button.disabled and not panel.stop_button.disabled
        before = panel.triggered
        for _ in range(3):
            panel.trigger_button.click()
        wait_for(lambda b=before: panel.triggered >= b + 10, 10, "the publisher to publish")
        panel.stop_button.click()
        assert not swarm.running and not panel.start_button.disabled, round_
        last_id = server.stats()["last_event_id"]
        report = delivery_report(swarm.metrics, last_id, [c.name for c in swarm.cursors])
        assert report["complete"] == 10 and report["missing"] == report["duplicates"] == 0
        assert panel.triggered == last_id  # every event came from this panel
    panel.refresh()
    assert f"<b>{last_id:,}</b>" in panel.counters.value and panel.plot.value
    panel.close()


@pytest.mark.serial
@pytest.mark.slow
def test_full_jitter_spreads_the_reconnect_storm(launched: Callable[..., Server]) -> None:
    server = launched("asyncio", hold=30)
    none = reconnect_storm(server, 200, backoff="none", downtime=1.5)
    jitter = reconnect_storm(server, 200, backoff="full-jitter", downtime=1.5)
    for storm in (none, jitter):
        assert storm.not_reconnected == 0, storm.summary()
        assert min(storm.reconnect_s) >= 1.0, storm.summary()  # nobody is back before the server
    # Full jitter spreads the middle 80 % of the clients over a window several times wider,
    # so the busiest 100 ms sees far fewer of them (margins are wide: the box is shared, and
    # under load the fixed pause's reconnects smear too: 0.99 s against jitter's 2.4 s once).
    def spread(storm: Storm) -> float:
        return percentile(storm.reconnect_s, 90) - percentile(storm.reconnect_s, 10)

    assert spread(jitter) > 2 * spread(none), (none.summary(), jitter.summary())
    assert jitter.peak_reconnect_rate() < 0.75 * none.peak_reconnect_rate(), (
        none.summary(), jitter.summary())


def test_proxy_calls_raise_the_kits_errors_not_requests(asyncio_server: Server,
                                                        launched: Callable[..., Server]) -> None:
    # The asyncio server is not a proxy: /_proxy/stats is a 404, which is a PollError.
    with pytest.raises(PollError) as refused:
        proxy_stats(asyncio_server)
    assert refused.value.status == 404
    with pytest.raises(PollError):
        cut_connections(asyncio_server)
    proxy = launched("proxy", upstream=asyncio_server.url)
    proxy.stop()
    with pytest.raises(ServerUnavailable) as down:
        proxy_stats(proxy)
    assert isinstance(down.value.__cause__, requests.RequestException)
