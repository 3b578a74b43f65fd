"""helpers/experiment.py: the engine behind every panel and every measured number."""

from __future__ import annotations

import threading
import time

import pytest

from helpers import Experiment, Server, Settings, headless, measure, wait_until
from helpers.experiment import auto_trigger


def test_settings_validate_once() -> None:
    assert Settings().strategy == "long"
    with pytest.raises(ValueError, match="strategy"):
        Settings(strategy="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="interval must be > 0"):
        Settings(interval=0)
    with pytest.raises(ValueError):
        Settings(clients=0)


def test_wait_until_returns_as_soon_as_the_condition_holds() -> None:
    ready_at = time.monotonic() + 0.05
    began = time.monotonic()
    assert wait_until(lambda: time.monotonic() >= ready_at, timeout=5)
    assert time.monotonic() - began < 4  # it did not sit out its timeout


def test_wait_until_gives_up_after_its_timeout() -> None:
    calls: list[float] = []
    began = time.monotonic()
    assert not wait_until(lambda: calls.append(time.monotonic()), timeout=0.1, interval=0.02)
    assert time.monotonic() - began >= 0.1
    assert len(calls) >= 2  # it checked again, not just once


def test_headless_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLLING_LAB_HEADLESS", "1")
    assert headless()
    monkeypatch.setenv("POLLING_LAB_HEADLESS", "0")
    assert not headless()


def test_auto_trigger_follows_the_rate_and_stops() -> None:
    stop = threading.Event()
    rate = [0.0]
    calls: list[float] = []
    thread = threading.Thread(target=auto_trigger,
                              args=(stop, lambda: rate[0], lambda: calls.append(time.monotonic())))
    thread.start()
    try:
        time.sleep(0.3)
        assert calls == []  # rate 0: nothing is published
        rate[0] = 50.0
        time.sleep(0.5)
        assert 8 <= len(calls) <= 60
    finally:
        stop.set()
        thread.join(2)
    assert not thread.is_alive()
    stopped_at = len(calls)
    time.sleep(0.1)
    assert len(calls) == stopped_at


@pytest.mark.live
def test_a_long_poll_run_delivers_every_event_at_once(asyncio_server: Server) -> None:
    fractions: list[float] = []
    experiment = Experiment(asyncio_server, Settings(strategy="long", hold=5, rate=10))
    summary = experiment.run(1.5, progress=fractions.append)
    assert summary["events"] == summary["triggered"] > 0
    assert summary["duplicates"] == summary["missing"] == summary["errors"] == 0
    assert summary["latency_ms_p50"] < 100
    assert summary["server"] == "asyncio" and summary["strategy"] == "long"
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert not experiment.running


@pytest.mark.live
def test_short_polling_asks_often_and_mostly_hears_nothing(naive_server: Server) -> None:
    summary = measure(naive_server, 1.5, strategy="short", interval=0.1, rate=2)
    assert summary["requests"] >= 10
    assert summary["empty_pct"] > 50
    assert summary["events"] == summary["triggered"]


@pytest.mark.live
def test_a_swarm_runs_when_there_are_many_clients(asyncio_server: Server) -> None:
    summary = measure(asyncio_server, 1.0, strategy="long", hold=5, rate=5, clients=5)
    assert summary["events"] == 5 * summary["triggered"] > 0
    assert summary["missing"] == summary["duplicates"] == 0


@pytest.mark.live
def test_start_stop_reset_and_manual_triggers(asyncio_server: Server) -> None:
    experiment = Experiment(asyncio_server, hold=5)
    try:
        experiment.start()
        experiment.start()  # a second start is harmless
        assert experiment.running
        event = experiment.trigger("by hand")
        assert event["message"] == "by hand"
        deadline = time.monotonic() + 5
        while experiment.summary()["events"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert experiment.summary()["events"] == experiment.summary()["triggered"] == 1
        experiment.reset()
        assert experiment.summary()["triggered"] == experiment.summary()["events"] == 0
        experiment.configure(hold=2)
        assert experiment.settings.hold == 2
    finally:
        experiment.stop()
    assert not experiment.running


@pytest.mark.live
def test_the_sleep_loop_waits_for_its_next_check(naive_server: Server) -> None:
    experiment = Experiment(naive_server, strategy="long", hold=5)
    assert experiment.settle_time() == pytest.approx(0.05 + 0.5)
    assert Experiment(naive_server, strategy="short", interval=2).settle_time() == \
        pytest.approx(2.3)
