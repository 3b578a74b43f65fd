"""helpers/sharing/: notebook 08's public names, pinned; the count; the Redis check; the panel."""

from __future__ import annotations

import pytest

import helpers.sharing
from helpers import launch
from helpers.panel import PanelBase
from helpers.redis_server import RedisMissing
from helpers.sharing import Audience, Tally, check_counting, count_client, publish, redis_ready
from helpers.sharing import needs as needs_module
from helpers.sharing.panel import SharingPanel

EXPECTED = [
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


def test_all_lists_exactly_the_public_names_sorted() -> None:
    assert helpers.sharing.__all__ == EXPECTED == sorted(EXPECTED)
    namespace: dict[str, object] = {}
    exec("from helpers.sharing import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(EXPECTED)
    for name in EXPECTED:
        obj = getattr(helpers.sharing, name)
        assert obj.__module__.startswith("helpers.sharing."), (name, obj.__module__)
        assert obj.__doc__, f"{name} has no docstring"


def test_the_sharing_panel_is_a_panel() -> None:
    assert issubclass(SharingPanel, PanelBase)
    assert helpers.sharing.SharingPanel is SharingPanel


@pytest.mark.parametrize(("published", "received", "expected"), [
    (["a", "b"], ["a", "b"], (0, 0)),
    (["a", "b", "c"], ["b"], (2, 0)),
    (["a", "b"], ["a", "a", "b", "a"], (0, 2)),
    (["a"], ["z", "z"], (1, 0)),
    ([], ["a"], (0, 0)),
])
def test_count_client_counts_lost_and_repeated_messages(
        published: list[str], received: list[str], expected: tuple[int, int]) -> None:
    assert count_client(published, received) == expected


def test_the_exercise_check_passes_the_right_count_only() -> None:
    assert check_counting(count_client)
    assert not check_counting(lambda published, received: (0, 0))
    assert not check_counting(lambda published, received: (len(set(published) - set(received)),
                                                           len(received) - len(set(received))))


def test_lost_pct_is_of_every_client_times_every_event() -> None:
    tally = Tally(clients=10, published=20, lost=50, duplicates=0, complete=0, stream_resets=0,
                  requests=0, errors=0, gateway_ended=0)
    assert tally.lost_pct == 25.0


def test_redis_ready_prints_how_to_install_or_fails_under_ci(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(needs_module, "redis_available", lambda: False)
    monkeypatch.delenv("CI", raising=False)
    assert redis_ready() is False
    printed = capsys.readouterr().out
    assert "apt-get install redis-server" in printed and "brew install redis" in printed
    monkeypatch.setenv("CI", "true")
    with pytest.raises(RedisMissing, match="apt-get install redis-server"):
        redis_ready()


@pytest.mark.live
def test_an_audience_on_one_server_gets_everything_once() -> None:
    with launch("asyncio") as server, Audience(server.url, 5, hold=5) as audience:
        sent = publish(server.url, 8, gap_s=0.02)
        audience.wait_for(sent, timeout=5)
        tally = audience.tally(sent)
        fanouts = audience.fanout_ms(sent)
    assert len(sent) == 8 and {p.served_by for p in sent} == {str(server.pid)}
    assert (tally.lost, tally.duplicates, tally.complete, tally.published) == (0, 0, 5, 8)
    assert len(fanouts) == 8 and all(f >= 0 for f in fanouts)
