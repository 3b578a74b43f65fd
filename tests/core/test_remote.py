"""connect(): a server someone else started, used the way notebooks use a launched one."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from helpers import Panel, PollError, PollingLabError, Server, ServerNotReady, connect

pytestmark = pytest.mark.live


def test_connect_offers_what_notebooks_use(asyncio_server: Server) -> None:
    with connect(asyncio_server.url + "/") as remote:
        assert remote.url == asyncio_server.url
        assert (remote.kind, remote.module) == ("fastapi", "servers.fastapi_server")
        assert remote.options == {}
        assert remote.health()["status"] == "ok"
        event = remote.trigger("from afar")
        assert event["message"] == "from afar"
        assert remote.stats()["last_event_id"] >= event["id"]
    assert asyncio_server.running, "stopping a connection must not stop the server"
    assert asyncio_server.health()["status"] == "ok"


def test_a_panel_runs_against_a_connected_server(asyncio_server: Server) -> None:
    remote = connect(asyncio_server.url)
    panel = Panel(remote, "long", hold=5)
    try:
        panel.trigger_button.click()
        assert panel.summary()["triggered"] == 1
        summary = panel.run(seconds=1.5, rate=5)
        assert summary["events"] == summary["triggered"] > 0
        assert summary["errors"] == summary["missing"] == 0
        assert bytes(panel.plot.value).startswith(b"\x89PNG")
    finally:
        panel.close()
        remote.stop()


def test_restart_explains_it_cannot(asyncio_server: Server) -> None:
    remote = connect(asyncio_server.url)
    with pytest.raises(PollingLabError, match="started by someone else.*launch"):
        remote.restart(hold=3)
    remote.stop()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connect_to_a_closed_port_says_what_to_check() -> None:
    port = _closed_port()
    with pytest.raises(ServerNotReady, match=rf"127\.0\.0\.1:{port}.*Check the URL.*launch\(\)"):
        connect(f"http://127.0.0.1:{port}", timeout=2)


def test_connect_refuses_a_url_without_a_scheme() -> None:
    with pytest.raises(ValueError, match="http://"):
        connect("127.0.0.1:8000")


def test_the_token_is_sent_when_the_server_wants_one(launched: Callable[..., Server]) -> None:
    server = launched("asyncio", token="s3cret")
    with connect(server.url) as anonymous:
        anonymous.stats()  # reading needs no token
        with pytest.raises(PollError, match="connect\\(url, token=") as refused:
            anonymous.trigger("no token")
        assert refused.value.status == 401
    with connect(server.url, token="wrong") as wrong, pytest.raises(PollError, match="refused"):
        wrong.trigger("wrong token")
    with connect(server.url, token="s3cret") as remote:
        assert remote.trigger("with token")["message"] == "with token"
        assert "s3cret" not in repr(remote)
