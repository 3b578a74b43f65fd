"""servers/proxy.py: a reverse proxy that forwards faithfully, times out like nginx, and cuts
every connection on command."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from helpers import Server, launch
from helpers.faults import cut_connections, proxy_stats
from servers import proxy as proxy_module

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def upstream() -> Iterator[Server]:
    with launch("asyncio", hold=5, max_waiting=50) as server:
        yield server


@pytest.fixture
def proxy(upstream: Server, launched: Callable[..., Server]) -> Server:
    return launched("proxy", upstream=upstream.url, read_timeout=2)


def is_json_error(response: requests.Response, status: int, code: str) -> bool:
    body = response.json()
    return (response.status_code == status and body["error"] == code
            and isinstance(body["detail"], str) and len(body["detail"]) > 20
            and response.headers["Content-Type"].startswith("application/json"))


def test_forwards_method_query_body_and_the_headers_that_matter(upstream: Server,
                                                                 proxy: Server) -> None:
    stream = upstream.health()["stream"]
    published = requests.post(proxy.url + "/trigger_event", json={"message": "héllo ✓"},
                              timeout=5)
    assert published.status_code == 201
    event = published.json()["event"]
    assert event["message"] == "héllo ✓"
    direct = requests.get(upstream.url + "/events", params={"last_event_id": event["id"] - 1},
                          timeout=5)
    via = requests.get(proxy.url + "/events", params={"last_event_id": event["id"] - 1},
                       timeout=5)
    assert via.status_code == 200 and via.content == direct.content
    assert via.headers["X-Stream-Id"] == stream
    assert via.headers["Content-Type"] == "application/json"
    empty = requests.get(proxy.url + "/poll_for_updates",
                         params={"last_event_id": event["id"], "timeout": 0.2}, timeout=5)
    assert empty.status_code == 204 and empty.content == b""
    assert empty.headers["X-Stream-Id"] == stream
    query = requests.post(proxy.url + "/trigger_event", params={"message": "a b&c=d ü"},
                          timeout=5)
    assert query.json()["event"]["message"] == "a b&c=d ü"


def test_errors_pass_through_unchanged(upstream: Server, proxy: Server) -> None:
    for method, path, params in [("GET", "/poll_for_updates", {"timeout": "301"}),
                                 ("GET", "/nowhere", {}), ("PUT", "/events", {})]:
        direct = requests.request(method, upstream.url + path, params=params, timeout=5)
        via = requests.request(method, proxy.url + path, params=params, timeout=5)
        assert (via.status_code, via.json()) == (direct.status_code, direct.json())
    assert requests.put(proxy.url + "/events", timeout=5).headers["Allow"] == "GET"


def test_retry_after_of_a_503_reaches_the_client(launched: Callable[..., Server]) -> None:
    server = launched("asyncio", max_waiting=0)  # every poll that would wait is refused
    proxy = launched("proxy", upstream=server.url)
    r = requests.get(proxy.url + "/poll_for_updates", params={"timeout": 5}, timeout=5)
    assert is_json_error(r, 503, "too_many_waiting")
    assert r.headers["Retry-After"] == "2"


def test_a_silent_upstream_gets_504_after_the_read_timeout(upstream: Server,
                                                           proxy: Server) -> None:
    cursor = upstream.stats()["last_event_id"]
    began = time.monotonic()
    r = requests.get(proxy.url + "/poll_for_updates",
                     params={"last_event_id": cursor, "timeout": 4}, timeout=10)
    waited = time.monotonic() - began
    assert is_json_error(r, 504, "gateway_timeout")
    assert 1.9 <= waited < 3.5, waited
    assert proxy_stats(proxy)["gateway_timeouts"] == 1


def test_an_unreachable_upstream_gets_502(launched: Callable[..., Server]) -> None:
    server = launched("asyncio")
    proxy = launched("proxy", upstream=server.url)
    server.stop()
    r = requests.get(proxy.url + "/events", timeout=5)
    assert is_json_error(r, 502, "bad_gateway")
    server.restart()  # the same port: the proxy reaches it again on the next request
    assert requests.get(proxy.url + "/events", timeout=5).status_code == 200
    assert proxy_stats(proxy)["bad_gateways"] == 1


def test_cut_drops_every_connection_but_keeps_serving(upstream: Server, proxy: Server,
                                                      pool: ThreadPoolExecutor) -> None:
    cursor = upstream.stats()["last_event_id"]
    waiting = upstream.stats()["waiting"]

    def held_poll() -> str:
        try:
            r = requests.get(proxy.url + "/poll_for_updates",
                             params={"last_event_id": cursor, "timeout": 1.5}, timeout=5)
        except requests.ConnectionError:
            return "cut"
        return str(r.status_code)

    polls = [pool.submit(held_poll) for _ in range(5)]
    deadline = time.monotonic() + 5
    while upstream.stats()["waiting"] < waiting + 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cut_connections(proxy) >= 5
    assert [p.result(5) for p in polls] == ["cut"] * 5
    deadline = time.monotonic() + 3  # the upstream polls were closed too, so they are released
    while upstream.stats()["waiting"] > waiting and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.stats()["waiting"] == waiting
    assert requests.get(proxy.url + "/events", timeout=5).status_code == 200
    stats = proxy_stats(proxy)
    assert stats["cuts"] == 1 and stats["connections_cut"] >= 5 and stats["in_flight"] == 0


def test_a_client_that_hangs_up_releases_its_upstream_poll(upstream: Server,
                                                           proxy: Server) -> None:
    waiting = upstream.stats()["waiting"]
    cursor = upstream.stats()["last_event_id"]
    with pytest.raises(requests.ReadTimeout):
        requests.get(proxy.url + "/poll_for_updates",
                     params={"last_event_id": cursor, "timeout": 1.8}, timeout=(2, 0.3))
    deadline = time.monotonic() + 1.0
    while upstream.stats()["waiting"] > waiting and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.stats()["waiting"] == waiting


def test_control_paths_answer_json_errors(proxy: Server) -> None:
    assert is_json_error(requests.get(proxy.url + "/_proxy/cut", timeout=5), 405,
                         "method_not_allowed")
    assert is_json_error(requests.post(proxy.url + "/_proxy/stats", timeout=5), 405,
                         "method_not_allowed")
    assert is_json_error(requests.get(proxy.url + "/_proxy/nothing", timeout=5), 404,
                         "not_found")
    big = requests.post(proxy.url + "/trigger_event", data=b"x" * (2 * 2**20), timeout=10)
    assert is_json_error(big, 413, "request_too_large")
    stats = proxy_stats(proxy)
    assert {"forwarded", "in_flight", "open_connections", "statuses", "gateway_timeouts",
            "bad_gateways", "cuts", "connections_cut", "read_timeout_s"} <= set(stats)
    assert stats["statuses"]["405"] == 2


@pytest.mark.parametrize("argv, message", [
    (["--upstream", "http://127.0.0.1:1", "--host", "0.0.0.0"], "loopback only"),
    (["--upstream", "127.0.0.1:1"], "http:// URL"),
    (["--upstream", "http://127.0.0.1:1", "--read-timeout", "0"], "read-timeout"),
])
def test_command_line_refuses_what_it_should(argv: list[str], message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        proxy_module.main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_many_clients_at_once(upstream: Server, proxy: Server) -> None:
    errors: list[BaseException] = []

    def client() -> None:
        try:
            with requests.Session() as session:
                for _ in range(10):
                    assert session.get(proxy.url + "/events", timeout=5).status_code == 200
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors[:3]


def _raw(url: str, data: bytes) -> tuple[bytes, bytes]:
    """Send `data` as it is and read the whole answer: (head, body)."""
    import socket

    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE\r\n\r\n",
    b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200))
    + b"\r\n",
], ids=["bad request line", "long url", "long header", "too many headers"])
def test_what_the_proxys_parser_refuses_is_a_json_error(proxy: Server,
                                                         request_bytes: bytes) -> None:
    import json

    head, body = _raw(proxy.url, request_bytes)
    assert head.split(b"\r\n")[0].split()[1] == b"400", head
    assert b"content-type: application/json" in head.lower(), head
    error = json.loads(body)
    assert error["error"] == "bad_request" and "could not read the request" in error["detail"]
    assert requests.get(proxy.url + "/_proxy/stats", timeout=5).status_code == 200
