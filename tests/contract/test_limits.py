"""The servers' limits: held polls (503 + Retry-After), message size (413), hold (400), and who
may publish (the token, and the refusal to listen beyond loopback without one)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
import requests

from helpers import Server, Swarm
from servers.contract import MAX_MESSAGE_CHARS, MAX_TIMEOUT_S
from servers.startup import ServerConfig, announce, parse_config

if TYPE_CHECKING:
    from conftest import InProcessApi, Reply


def json_error(reply: Reply, status: int, code: str) -> dict[str, Any]:
    assert reply.status == status, (reply.status, reply.content[:200])
    body: dict[str, Any] = reply.json()
    assert body["error"] == code and isinstance(body["detail"], str), body
    return body


# --- held polls ---------------------------------------------------------------------------------


@pytest.mark.serial
@pytest.mark.live
@pytest.mark.parametrize("kind", ["asyncio", "lean", "naive"])
def test_polls_beyond_the_limit_get_503_and_health_stays_quick(
        kind: str, launched: Callable[..., Server]) -> None:
    server = launched(kind, hold=30, max_waiting=20, check_interval=0.5) if kind == "naive" \
        else launched(kind, hold=30, max_waiting=20)
    session = requests.Session()
    health_s: list[float] = []

    def health() -> None:
        began = time.monotonic()
        assert session.get(server.url + "/health", timeout=5).status_code == 200
        health_s.append(time.monotonic() - began)

    with Swarm(server.url, 30, "long", hold=30) as swarm:
        deadline = time.monotonic() + 10
        while (server.stats()["waiting"] < 20 or swarm.metrics.errors < 10) and \
                time.monotonic() < deadline:
            health()
            time.sleep(0.05)
        stats = server.stats()
        refused = session.get(server.url + "/poll_for_updates",
                              params={"last_event_id": stats["last_event_id"], "timeout": 5},
                              timeout=5)
        for _ in range(10):
            health()
        errors = swarm.metrics.summary()
    session.close()
    assert stats["waiting"] == stats["peak_waiting"] == 20, stats
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "2"
    assert refused.json()["error"] == "too_many_waiting"
    assert errors["errors"] >= 10 and "503" in str(errors["last_error"]), errors
    assert max(health_s) < 0.5, f"/health took up to {max(health_s):.3f} s while at the limit"


# --- message size and hold ----------------------------------------------------------------------


def test_a_message_over_the_limit_is_413_and_one_at_the_limit_is_published(
        api: InProcessApi) -> None:
    json_error(api.trigger("x" * (MAX_MESSAGE_CHARS + 1)), 413, "message_too_long")
    json_error(api.request("POST", "/trigger_event",
                           params={"message": "é" * (MAX_MESSAGE_CHARS + 1)}), 413,
               "message_too_long")
    accepted = api.trigger("é" * MAX_MESSAGE_CHARS)
    assert accepted.status == 201 and len(accepted.json()["event"]["message"]) == 4096


def test_a_hold_beyond_the_maximum_is_400(api: InProcessApi) -> None:
    api.publish(1)
    for path in ("/poll_for_updates", "/events"):
        body = json_error(api.get(path, timeout=MAX_TIMEOUT_S + 0.001), 400, "bad_parameter")
        assert "300" in body["detail"]
        # The maximum itself is allowed (answered at once here: an event is waiting).
        assert api.get(path, timeout=MAX_TIMEOUT_S, last_event_id=0).status == 200


def test_a_hold_beyond_the_maximum_cannot_be_configured() -> None:
    with pytest.raises(ValueError, match="hold"):
        ServerConfig(hold=MAX_TIMEOUT_S + 1)


# --- who may publish ------------------------------------------------------------------------------


def test_listening_beyond_loopback_needs_a_token() -> None:
    with pytest.raises(ValueError, match="--token"):
        ServerConfig(host="0.0.0.0")
    with pytest.raises(ValueError, match="--token"):
        ServerConfig(host="192.168.1.20")
    assert ServerConfig(host="0.0.0.0", token="s3cret").token == "s3cret"  # nothing is bound
    for host in ("127.0.0.1", "::1", "localhost"):
        assert ServerConfig(host=host).token is None


def test_the_command_line_refuses_an_open_host_without_a_token(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config("fastapi_server", ["--host", "0.0.0.0"])
    assert "--token" in capsys.readouterr().err
    config = parse_config("fastapi_server", ["--host", "0.0.0.0", "--token", "t"])
    assert (config.host, config.token) == ("0.0.0.0", "t")


class _FakeSocket:
    """Only what announce() reads; nothing is bound (tests never listen beyond loopback)."""

    def __init__(self, host: str) -> None:
        self.host = host

    def getsockname(self) -> tuple[str, int]:
        return (self.host, 8000)


def test_announce_warns_when_reachable_from_other_machines(
        capsys: pytest.CaptureFixture[str]) -> None:
    config = ServerConfig(host="0.0.0.0", token="t")
    assert announce("demo", _FakeSocket("0.0.0.0"), config) == "http://0.0.0.0:8000"  # type: ignore[arg-type]
    assert "WARNING" in capsys.readouterr().out
    announce("demo", _FakeSocket("127.0.0.1"), ServerConfig())  # type: ignore[arg-type]
    assert "WARNING" not in capsys.readouterr().out


def test_publishing_needs_the_token_and_reading_does_not(
        make_api: Callable[..., InProcessApi]) -> None:
    for kind in ("flask", "fastapi"):
        api = make_api(kind, token="s3cret")
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"},
                        {"Authorization": "Bearer s3cret "}):
            reply = _post(api, headers)
            json_error(reply, 401, "unauthorized")
        assert api.stats()["events_published"] == 0
        assert _post(api, {"Authorization": "Bearer s3cret"}).status == 201
        assert api.get("/events").status == 200
        assert api.get("/poll_for_updates", timeout=0).status == 200


def _post(api: InProcessApi, headers: dict[str, str]) -> Reply:
    return api.request("POST", "/trigger_event", json_body={"message": "m"}, headers=headers)


@pytest.mark.live
def test_a_launched_server_with_a_token_refuses_anonymous_publishes(
        launched: Callable[..., Server]) -> None:
    server = launched("asyncio", token="s3cret")
    anonymous = requests.post(server.url + "/trigger_event", json={"message": "m"}, timeout=5)
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
    allowed = requests.post(server.url + "/trigger_event", json={"message": "m"}, timeout=5,
                            headers={"Authorization": "Bearer s3cret"})
    assert allowed.status_code == 201 and allowed.json()["event"]["id"] == 1
