"""helpers/http.py: the one synchronous request to a kit server, and its errors translated."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
import requests

from helpers import PollError, Server, ServerUnavailable
from helpers.http import KeptConnection, error_for, loopback_session, request, session_for


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_5xx_is_worth_retrying_and_keeps_retry_after() -> None:
    error = error_for(503, {"error": "busy", "detail": "too many waiting"}, {"Retry-After": "2"})
    assert isinstance(error, ServerUnavailable)
    assert str(error) == "HTTP 503: too many waiting"
    assert error.retry_after == 2.0
    assert error_for(502, None, {}).retry_after is None


def test_a_4xx_keeps_the_servers_code_and_detail() -> None:
    error = error_for(400, {"error": "bad_parameter", "detail": "limit must be 1-1000"}, {})
    assert isinstance(error, PollError)
    assert (error.status, error.code, error.detail) == (400, "bad_parameter",
                                                         "limit must be 1-1000")
    bare = error_for(404, "not json", {}, fallback_detail="Not Found", fallback_code="http")
    assert isinstance(bare, PollError)
    assert (bare.code, bare.detail) == ("http", "Not Found")


def test_sessions_ignore_a_proxy_only_on_loopback() -> None:
    assert not loopback_session().trust_env
    assert not session_for("http://127.0.0.1:8000").trust_env
    assert not session_for("http://localhost:8000").trust_env
    assert session_for("http://10.0.0.5:8000").trust_env


@pytest.mark.live
def test_request_returns_the_response_and_translates_refusals(asyncio_server: Server) -> None:
    assert request("GET", asyncio_server.url + "/health").json()["status"] == "ok"
    with pytest.raises(PollError) as refused:
        request("GET", asyncio_server.url + "/events", params={"last_event_id": "x"})
    assert refused.value.status in (400, 422)
    assert refused.value.code != "error"  # the server's own code, not a placeholder


def test_request_to_a_closed_port_is_server_unavailable_with_the_cause() -> None:
    with pytest.raises(ServerUnavailable) as raised:
        request("GET", f"http://127.0.0.1:{closed_port()}/health", timeout=2)
    assert isinstance(raised.value.__cause__, requests.ConnectionError)


def test_request_uses_the_callers_translations() -> None:
    with pytest.raises(ServerUnavailable, match="mine"):
        request("GET", f"http://127.0.0.1:{closed_port()}/", timeout=2,
                on_unreachable=lambda exc: ServerUnavailable("mine"))


@pytest.mark.live
def test_kept_connection_publishes_and_translates(asyncio_server: Server) -> None:
    with KeptConnection(asyncio_server.url) as connection:
        first = connection.request("POST", "/trigger_event", json_body={"message": "one"})
        second = connection.request("POST", "/trigger_event", json_body={"message": "two"})
        assert first.status == second.status == 201
        assert second.json()["event"]["id"] == first.json()["event"]["id"] + 1
        assert "content-type" in second.headers and "Content-Type" in second.headers
        with pytest.raises(PollError) as refused:
            connection.request("GET", "/events?limit=0")
        assert refused.value.status in (400, 422)


@pytest.mark.live
def test_kept_connection_survives_a_restart(launched: Callable[..., Server]) -> None:
    server = launched("asyncio", hold=1)
    with KeptConnection(lambda: server.url) as connection:
        assert connection.request("GET", "/stats").status == 200
        server.restart()  # the kept connection is now closed at the far end
        assert connection.request("GET", "/stats").json()["last_event_id"] == 0
        server.stop()
        with pytest.raises(ServerUnavailable):
            connection.request("GET", "/stats")
