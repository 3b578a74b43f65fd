"""helpers/redis_server.py: a real redis-server, started, restarted and stopped by the kit."""

from __future__ import annotations

import os
import shutil

import pytest
import redis
from service_check import need_redis

from helpers import RedisMissing, RedisServer, launch_redis, redis_available
from helpers.processes import status_field

pytestmark = pytest.mark.live


def test_launch_redis_answers_on_loopback_and_stops_by_pid() -> None:
    need_redis()
    server = launch_redis()
    try:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        with server.client() as client:
            assert client.ping()
            assert client.config_get("bind")["bind"] == "127.0.0.1"
            assert client.config_get("save")["save"] == ""  # no snapshots unless asked
            assert client.config_get("appendonly")["appendonly"] == "no"
        assert os.getpgid(server.pid) == server.pid  # its own session: the stop button misses it
    finally:
        server.stop()
        server.remove_data()
    assert not server.running and not server.dir.exists()
    assert status_field(server.pid, "VmRSS") == 0  # the pid is gone, reaped


def test_restart_keeps_the_port_and_appendonly_keeps_the_data() -> None:
    need_redis()
    with launch_redis(appendonly=True) as server:
        port, first_pid = server.port, server.pid
        with server.client() as client:
            client.set("kept", "yes")
        server.restart()
        assert (server.port, server.running) == (port, True) and server.pid != first_pid
        with server.client() as client:
            assert client.get("kept") == "yes"


def test_without_appendonly_a_restart_forgets_everything() -> None:
    need_redis()
    with launch_redis() as server:
        with server.client() as client:
            client.set("kept", "yes")
        server.restart()
        with server.client() as client:
            assert client.get("kept") is None


def test_kill_pubsub_cuts_every_subscriber(redis_server: RedisServer) -> None:
    with redis_server.client() as client:
        pubsub = client.pubsub()
        pubsub.subscribe("a")
        pubsub.get_message(timeout=1)  # the subscribe confirmation
        assert client.pubsub_numsub("a") == [("a", 1)]
        assert redis_server.kill_pubsub() == 1
        assert client.pubsub_numsub("a") == [("a", 0)]
        pubsub.close()


def test_a_missing_redis_server_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert not redis_available()
    with pytest.raises(RedisMissing, match="apt-get install redis-server") as raised:
        RedisServer()
    assert "brew install redis" in str(raised.value)


def test_a_pubsub_outage_keeps_subscribers_out_until_it_ends(redis_server: RedisServer) -> None:
    with redis_server.client() as client:
        pubsub = client.pubsub()
        pubsub.subscribe("a")
        pubsub.get_message(timeout=1)  # the subscribe confirmation
        with redis_server.pubsub_outage() as cut:
            assert cut == 1 and client.pubsub_numsub("a") == [("a", 0)]
            assert client.publish("a", "published during the outage") == 0  # nobody heard it
            again = client.pubsub()
            with pytest.raises(redis.exceptions.NoPermissionError):
                again.subscribe("a")
                again.get_message(timeout=1)
            again.close()
        pubsub.close()
        back = client.pubsub()
        back.subscribe("a")
        assert back.get_message(timeout=1)["type"] == "subscribe"
        assert client.publish("a", "after") == 1
        back.close()
