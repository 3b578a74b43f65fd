"""servers/gateway.py through helpers/cluster.py: round-robin over healthy servers, a dead one
out of the rotation within a second, the token at the door, and 429 with Retry-After."""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import requests
from websockets.sync.client import connect

from helpers import Server, launch_cluster
from helpers.cluster import Cluster
from servers import proxy as proxy_module
from servers.gateway import RateLimiter, client_key

pytestmark = pytest.mark.live
OUT_OF_ROTATION_S = 1.0  # the promise: a dead server leaves the rotation within this


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with launch_cluster(3, hold=5) as launched:
        yield launched


def served_by(response: requests.Response) -> str:
    return response.headers["X-Upstream"]


def wait_for(predicate: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until `predicate()` is true, or None after `timeout` s."""
    began = time.monotonic()
    while not predicate():
        if time.monotonic() - began > timeout:
            return None
        time.sleep(0.01)
    return time.monotonic() - began


def test_requests_go_round_robin_across_the_servers(cluster: Cluster) -> None:
    with requests.Session() as session:
        answers = [session.get(cluster.url + "/health", timeout=5) for _ in range(30)]
    assert all(a.status_code == 200 for a in answers)
    counts = Counter(served_by(a) for a in answers)
    assert set(counts) == {s.url for s in cluster.servers}
    assert min(counts.values()) >= 8, counts  # 10 each when all are healthy
    streams = {a.json()["stream"] for a in answers}  # three separate event logs, no broker
    assert len(streams) == 3
    stats = cluster.gateway_stats()
    assert [u["url"] for u in stats["upstreams"]] == [s.url for s in cluster.servers]
    assert all(u["healthy"] and u["forwarded"] >= 8 for u in stats["upstreams"])


def test_a_killed_server_leaves_the_rotation_within_a_second_and_comes_back() -> None:
    with launch_cluster(3) as cluster:  # its own: a restarted server has a new pid
        check_kill_and_restart(cluster)


def check_kill_and_restart(cluster: Cluster) -> None:
    cluster.kill(1)
    left = wait_for(lambda: not cluster.healthy()[1], 3)
    assert left is not None and left < OUT_OF_ROTATION_S, left
    with requests.Session() as session:
        answers = [session.get(cluster.url + "/events", timeout=5) for _ in range(12)]
        published = [session.post(cluster.url + "/trigger_event", json={"message": "x"},
                                  timeout=5) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 12
    assert [p.status_code for p in published] == [201] * 6
    assert cluster.servers[1].url not in {served_by(a) for a in answers + published}
    down = cluster.gateway_stats()["upstreams"][1]
    assert not down["healthy"] and down["marked_down"] >= 1 and down["down_because"]
    cluster.restart(1)
    back = wait_for(lambda: cluster.healthy()[1], 3)
    assert back is not None and back < OUT_OF_ROTATION_S, back
    with requests.Session() as session:
        seen = {served_by(session.get(cluster.url + "/events", timeout=5)) for _ in range(6)}
    assert cluster.servers[1].url in seen


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_refused_connect_is_retried_on_the_next_server(launched: Callable[..., Server]) -> None:
    live = launched("asyncio")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    gateway = launched("proxy", upstream=[dead, live.url])
    with requests.Session() as session:
        answers = [session.post(gateway.url + "/trigger_event", json={"message": str(n)},
                                timeout=5) for n in range(4)]
    assert [a.status_code for a in answers] == [201] * 4
    assert [a.json()["event"]["id"] for a in answers] == [1, 2, 3, 4]  # each published once
    stats = requests.get(gateway.url + "/_proxy/stats", timeout=5).json()
    assert stats["upstreams"][0]["healthy"] is False
    assert stats["upstreams"][0]["connect_failures"] + stats["upstreams"][0]["failed_checks"] >= 1
    assert stats["bad_gateways"] == 0


def test_every_server_down_is_a_json_502(launched: Callable[..., Server]) -> None:
    live = launched("asyncio")  # the launcher waits for /health through the gateway
    gateway = launched("proxy", upstream=[f"http://127.0.0.1:{free_port()}", live.url])
    live.stop()
    answer = requests.get(gateway.url + "/events", timeout=10)
    assert answer.status_code == 502 and answer.json()["error"] == "bad_gateway"
    assert answer.headers["X-Proxy-Error"] == "bad_gateway" and len(answer.json()["detail"]) > 20


def test_the_token_guards_publishes_at_the_gateway(launched: Callable[..., Server]) -> None:
    with launch_cluster(2, token="s3cret") as guarded:
        url = guarded.url + "/trigger_event"
        for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"},
                        {"Authorization": "Bearer s3crét ✓".encode().decode("latin-1")}]:  # no 500
            refused = requests.post(url, headers=headers, timeout=5)
            assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
            assert "--token" in refused.json()["detail"]
        good = {"Authorization": "bearer s3cret"}  # the scheme in any case
        assert requests.post(url, headers=good, timeout=5).status_code == 201
        assert guarded.trigger("with the token")["message"] == "with the token"
        assert requests.get(guarded.url + "/events", timeout=5).status_code == 200
        ws_url = "ws" + guarded.url.removeprefix("http") + "/ws?last_event_id=1000"
        with connect(ws_url, proxy=None, open_timeout=5) as ws:  # reading needs no token
            assert json.loads(ws.recv(timeout=5))["type"] == "hello"
            ws.send(json.dumps({"type": "publish", "message": "no token"}))
            frame = json.loads(ws.recv(timeout=5))
            assert frame["type"] == "error" and frame["error"] == "unauthorized"
            ws.send(json.dumps({"type": "publish", "message": "still no token"}))
            assert json.loads(ws.recv(timeout=5))["error"] == "unauthorized"  # still open
        with connect(ws_url, proxy=None, open_timeout=5,
                     additional_headers={"Authorization": "Bearer s3cret"}) as ws:
            ws.recv(timeout=5)
            ws.send(json.dumps({"type": "publish", "message": "with it"}))
            assert json.loads(ws.recv(timeout=5))["type"] == "published"
        stats = guarded.gateway_stats()
        assert stats["token"] is True and stats["unauthorized"] == 6
        assert stats["streams"]["frames_refused"] == 2


@pytest.mark.parametrize("argv, env, message", [
    (["--token", "  "], {}, "empty or blank"),
    ([], {proxy_module.TOKEN_ENV: ""}, "empty or blank"),
    (["--rate-limit", "0"], {}, "rate-limit"),
    (["--rate-limit", "5", "--rate-burst", "0"], {}, "rate-burst"),
    (["--buffering", "sometimes"], {}, "invalid choice"),
])
def test_command_line_refuses_a_bad_gateway_option(
        argv: list[str], env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exited:
        proxy_module.main(["--upstream", "http://127.0.0.1:1", *argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_the_token_bucket_allows_bursts_then_the_rate() -> None:
    limiter = RateLimiter(2, burst=3)
    assert [limiter.take("a", now=0.0) for _ in range(4)] == [0, 0, 0, 1]
    assert limiter.take("b", now=0.0) == 0  # another client has its own bucket
    assert limiter.take("a", now=0.5) == 0  # 0.5 s at 2/s: one token back
    assert limiter.take("a", now=0.5) == 1
    assert limiter.take("a", now=10.0) == 0 and limiter.refused == 2
    slow = RateLimiter(0.1)  # one request per 10 s: Retry-After says the whole wait
    assert slow.take("a", now=0.0) == 0 and slow.take("a", now=0.0) == 10
    assert client_key({"X-Client-Id": " x "}, "127.0.0.1") == "id:x"
    assert client_key({}, "127.0.0.1") == client_key({"X-Client-Id": ""}, "127.0.0.1")


@pytest.mark.serial  # three requests must fit in the half second one token takes to come back
def test_the_rate_limit_answers_429_with_retry_after(launched: Callable[..., Server]) -> None:
    upstream = launched("asyncio")
    gateway = launched("proxy", upstream=upstream.url, rate_limit=2, rate_burst=2)
    time.sleep(1.1)  # the launcher's readiness checks took tokens from this machine's bucket
    mine = {"X-Client-Id": "learner-1"}
    answers = [requests.get(gateway.url + "/events", headers=mine, timeout=5) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    refused = answers[2]
    assert refused.json()["error"] == "rate_limited" and "Retry-After" in refused.json()["detail"]
    wait = int(refused.headers["Retry-After"])
    assert wait >= 1 and refused.headers["Content-Type"].startswith("application/json")
    other = requests.get(gateway.url + "/events", headers={"X-Client-Id": "learner-2"},
                         timeout=5)
    assert other.status_code == 200  # each client its own bucket
    time.sleep(wait)
    assert requests.get(gateway.url + "/events", headers=mine, timeout=5).status_code == 200
    stats = requests.get(gateway.url + "/_proxy/stats", timeout=5).json()
    assert stats["rate_limited"] == 1 and stats["statuses"]["429"] == 1
    assert (stats["rate_limit"], stats["rate_burst"]) == (2, 2)


def test_a_paused_server_leaves_the_rotation_and_a_stream_moves_on() -> None:
    from helpers import SSEClient

    with launch_cluster(2) as pair:
        with SSEClient(pair.url) as client:
            assert wait_for(lambda: client.connections >= 1, 5) is not None
            first = cluster_index(pair, client)
            pair.servers[first].pause()  # frozen: it accepts, and answers nothing
            try:
                left = wait_for(lambda: not pair.healthy()[first], 3)
                assert left is not None and left < OUT_OF_ROTATION_S, left
                pair.kill(first)  # now it dies: its streams end, the client comes back
                other = pair.servers[1 - first]
                assert wait_for(lambda: client.connections >= 2, 10) is not None
                time.sleep(0.3)
                other.trigger("on the other server")
                assert wait_for(lambda: client.metrics.summary()["events"] >= 1, 5) is not None
            finally:
                pair.servers[first].resume()


def cluster_index(cluster: Cluster, client: object) -> int:
    """Which server holds the client's stream: the one whose `streams` count is 1."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        counts = [s.stats()["streams"] for s in cluster.servers]
        if sum(counts) == 1:
            return counts.index(1)
        time.sleep(0.02)
    pytest.fail(f"no single server holds the stream: {counts}")
