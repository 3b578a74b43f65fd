"""Both servers over TLS (`--tls`, `launch(kind, tls=True)`): the contract, the streams, and
clients that verify the throwaway CA, or refuse a server they were not told to trust."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from helpers import (
    LongPollClient,
    PollingLabError,
    Server,
    SSEClient,
    WebSocketClient,
    connect,
    measure,
)
from helpers.errors import UntrustedCertificate
from helpers.http import KeptConnection, request
from helpers.launcher import PROJECT_ROOT
from helpers.streams import StreamClient
from helpers.tls import client_context, throwaway_certificate

pytestmark = pytest.mark.live
KINDS = ["asyncio", "flask", "lean"]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.parametrize("kind", KINDS)
def test_the_contract_holds_over_tls(launched: Callable[..., Server], kind: str) -> None:
    server = launched(kind, tls=True, hold=5)
    assert server.url.startswith("https://127.0.0.1:") and server.ca_file is not None
    assert server.health()["status"] == "ok"
    event = server.trigger("over tls")
    verify = str(server.ca_file)
    answer = request("GET", server.url + "/poll_for_updates", verify=verify,
                     params={"last_event_id": event["id"] - 1, "timeout": 1})
    assert answer.status_code == 200 and answer.json()[-1]["message"] == "over tls"
    empty = request("GET", server.url + "/poll_for_updates", verify=verify,
                    params={"last_event_id": event["id"], "timeout": 0.2})
    assert empty.status_code == 204
    assert server.stats()["connections"] >= 1


def test_plain_http_to_a_tls_server_gets_no_answer(launched: Callable[..., Server]) -> None:
    server = launched("asyncio", tls=True)
    with pytest.raises(PollingLabError):
        request("GET", server.url.replace("https://", "http://") + "/health", timeout=2)
    assert server.health()["status"] == "ok"  # and the server is still up


@pytest.mark.parametrize("kind", ["asyncio", "flask"])
def test_a_long_poll_client_verifies_the_throwaway_ca(launched: Callable[..., Server],
                                                      kind: str) -> None:
    server = launched(kind, tls=True, hold=5)
    with LongPollClient(server.url, hold=5, verify=server.verify) as client:
        for i in range(3):
            server.trigger(f"e{i}")
        wait_for(lambda: client.metrics.summary()["events"] == 3, 10, "three events")
    summary = client.metrics.summary()
    assert summary["missing"] == summary["duplicates"] == 0 and client.error is None


@pytest.mark.parametrize("client_class", [SSEClient, WebSocketClient])
def test_streams_over_tls_pay_one_handshake(launched: Callable[..., Server],
                                            client_class: type[StreamClient]) -> None:
    server = launched("asyncio", tls=True)
    before = server.stats()["connections"]
    with client_class(server.url, verify=server.verify) as client:
        wait_for(lambda: client.cursor.stream is not None, 10, "the stream to open")
        for i in range(5):
            server.trigger(f"e{i}")
        wait_for(lambda: client.delivered == 5, 10, "five events")
    # one stream connection; the launcher's own trigger and stats calls share one kept session
    assert client.connections == 1
    assert server.stats()["connections"] - before <= 2


@pytest.mark.parametrize("make", [
    lambda url: LongPollClient(url, hold=1),
    lambda url: SSEClient(url),
    lambda url: WebSocketClient(url),
], ids=["long", "sse", "ws"])
def test_a_client_without_the_ca_stops_with_a_clear_error(launched: Callable[..., Server],
                                                           make: Callable[[str], object]) -> None:
    server = launched("asyncio", tls=True)
    client: LongPollClient | StreamClient = make(server.url)  # type: ignore[assignment]
    client.start()
    wait_for(lambda: not client.running, 5, "the client to give up")
    assert isinstance(client.error, UntrustedCertificate)
    assert "verify=server.ca_file" in str(client.error)


def test_every_kit_call_refuses_a_server_it_does_not_trust(launched: Callable[..., Server]) -> None:
    server = launched("flask", tls=True)
    with pytest.raises(UntrustedCertificate, match="verify=server.ca_file"):
        request("GET", server.url + "/health")
    with KeptConnection(server.url) as kept, pytest.raises(UntrustedCertificate):
        kept.request("GET", "/health")
    with KeptConnection(server.url, verify=server.verify) as kept:
        assert kept.request("GET", "/health").json()["status"] == "ok"


def test_verification_cannot_be_turned_off() -> None:
    for make in (lambda: LongPollClient("https://127.0.0.1:1", verify=False),
                 lambda: SSEClient("https://127.0.0.1:1", verify=False),
                 lambda: KeptConnection("https://127.0.0.1:1", verify=False)):
        with pytest.raises(ValueError, match="verify=server.ca_file"):
            make()


def test_the_certificate_names_loopback_only(tmp_path: Path) -> None:
    made = throwaway_certificate(tmp_path)
    context = client_context(made.ca_file)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(made.cert_file, made.key_file)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        for name, trusted in (("127.0.0.1", True), ("localhost", True), ("example.com", False)):
            with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
                accepted, _ = listener.accept()
                with accepted:
                    accepted.settimeout(2)
                    side = threading.Thread(target=_serve_handshake, args=(served, accepted))
                    side.start()
                    try:
                        context.wrap_socket(raw, server_hostname=name).close()
                        ok = True
                    except ssl.SSLCertVerificationError:
                        ok = False
                    side.join(3)
            assert ok is trusted, name


def _serve_handshake(context: ssl.SSLContext, sock: socket.socket) -> None:
    try:
        context.wrap_socket(sock, server_side=True).close()
    except (OSError, ssl.SSLError):
        pass  # the client refused us: that is what the test looks for


@pytest.mark.parametrize("module", ["servers.fastapi_server", "servers.flask_server"])
def test_a_missing_certificate_is_refused_before_serving(tmp_path: Path, module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, "--port", "0", "--tls", str(tmp_path / "no.pem"),
         str(tmp_path / "no.key")], cwd=PROJECT_ROOT, capture_output=True, text=True,
        timeout=30)
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert "serving on" not in result.stdout


@pytest.mark.parametrize("kind", ["asyncio", "flask"])
def test_a_client_that_never_starts_its_handshake_is_let_go(launched: Callable[..., Server],
                                                             kind: str) -> None:
    """It must not block the accept loop meanwhile, nor hold its connection past the timeout."""
    server = launched(kind, tls=True, request_timeout=1)
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as silent:
        time.sleep(0.2)
        assert requests.get(server.url + "/health", verify=str(server.ca_file), timeout=3).ok
        started = time.monotonic()
        assert silent.recv(100) == b""  # closed by the server, without a word
        assert time.monotonic() - started < 3


def test_a_restart_keeps_https_and_the_same_ca(launched: Callable[..., Server]) -> None:
    server = launched("asyncio", tls=True)
    ca_file = server.ca_file
    server.restart()
    assert server.url.startswith("https://") and server.ca_file == ca_file
    assert server.health()["status"] == "ok"
    server.restart(tls=False)
    assert server.url.startswith("http://") and server.verify is True
    assert server.health()["status"] == "ok"


def test_connect_to_a_shared_https_server_with_its_ca(launched: Callable[..., Server]) -> None:
    server = launched("asyncio", tls=True)
    with pytest.raises(UntrustedCertificate, match="connect\\(url, verify=PATH\\)"):
        connect(server.url)
    shared = connect(server.url, verify=str(server.ca_file))
    try:
        assert shared.kind == "fastapi" and shared.trigger("hi")["message"] == "hi"
        assert shared.verify == str(server.ca_file)
    finally:
        shared.stop()


def test_stop_returns_promptly_during_a_held_https_poll(launched: Callable[..., Server]) -> None:
    server = launched("asyncio", tls=True)
    client = LongPollClient(server.url, hold=30, verify=server.verify).start()
    wait_for(lambda: server.stats()["waiting"] >= 1, 10, "the poll to be held")
    started = time.monotonic()
    client.stop()
    assert time.monotonic() - started < 1.5 and not client.running
    assert client.error is None


def test_an_experiment_on_an_https_server_verifies_its_ca(launched: Callable[..., Server]) -> None:
    server = launched("asyncio", tls=True)
    result = measure(server, seconds=1.0, strategy="long", rate=5)
    assert result["events"] >= 2 and result["errors"] == 0, result
