"""servers/fastapi_server.py: the asyncio long poll's promptness, and what it shares and frees.

Its endpoints are tested with every other server's in test_api_endpoints.py. Here, Starlette's
in-process TestClient (one event loop for every request, as under uvicorn) shows what the
asyncio poll adds: one publish wakes every held poll, and answers shared between polls stay
fresh. The tests marked `live` start the real server, because timing is the point.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
import requests

from helpers import Server

if TYPE_CHECKING:
    from conftest import InProcessApi


@pytest.fixture(params=["fastapi", "lean"])
def api(request: pytest.FixtureRequest, make_api: Callable[..., InProcessApi]) -> InProcessApi:
    """The app, with its long poll through FastAPI and then through the raw-ASGI lean path."""
    return make_api(request.param, hold=0.5)


def ids(events: list[dict[str, Any]]) -> list[int]:
    return [event["id"] for event in events]


# --- the asyncio long poll, in process --------------------------------------------------------


def test_one_publish_wakes_every_held_poll(api: InProcessApi, pool: ThreadPoolExecutor,
                                           waiter: Callable[..., None]) -> None:
    api.publish(2)
    cursors = [0, 1, 2, 2, 2]
    held = [pool.submit(api.get, "/poll_for_updates", last_event_id=c, timeout=5)
            for c in cursors]
    # Cursors 0 and 1 are answered at once, but their requests race the others to the server:
    # the publish must come after both answers (under load, cursor 0's once arrived after it).
    answered = [held[0].result(timeout=3), held[1].result(timeout=3)]
    waiter(lambda: api.stats()["waiting"] == 3, what="three polls to be held")
    published = time.monotonic()
    api.publish(1)
    replies = answered + [future.result(timeout=3) for future in held[2:]]
    assert time.monotonic() - published < 1.5
    assert [ids(r.json()) for r in replies] == [[1, 2], [2], [3], [3], [3]]
    stats = api.stats()
    assert (stats["waiting"], stats["peak_waiting"]) == (0, 3)


def test_answers_follow_new_events_on_the_same_cursor(api: InProcessApi) -> None:
    # Encoded answers are shared between polls with the same cursor; a publish must renew them.
    api.publish(1)
    assert ids(api.get("/events").json()) == [1]
    assert ids(api.get("/poll_for_updates").json()) == [1]
    api.publish(1)
    assert ids(api.get("/events").json()) == [1, 2]
    assert ids(api.get("/poll_for_updates").json()) == [1, 2]
    assert ids(api.get("/events", limit=1).json()) == [1]


def test_timeout_zero_answers_at_once_without_waiting(api: InProcessApi) -> None:
    started = time.monotonic()
    assert api.get("/poll_for_updates", timeout=0).status == 204
    assert time.monotonic() - started < 0.5
    assert api.stats()["peak_waiting"] == 0


# --- the real server --------------------------------------------------------------------------


@pytest.mark.live
@pytest.mark.parametrize("kind", ["asyncio", "lean"])
def test_live_poll_answers_within_50_ms_of_a_publish(kind: str,
                                                     launched: Callable[..., Server]) -> None:
    server = launched(kind, hold=30)
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with ThreadPoolExecutor(1) as pool:
            def hold() -> tuple[int, bytes, float]:
                conn.request("GET", "/poll_for_updates?last_event_id=0&timeout=10")
                response = conn.getresponse()
                body = response.read()
                return response.status, body, time.time()

            held = pool.submit(hold)
            deadline = time.monotonic() + 5
            while server.stats()["waiting"] != 1:
                assert time.monotonic() < deadline, "the poll was never held"
                time.sleep(0.005)
            server.stats()  # warm the trigger's connection; nothing else happens in between
            triggered = time.time()
            event = server.trigger("now")
            status, body, arrived = held.result(timeout=5)
    finally:
        conn.close()
    assert status == 200
    assert [e["id"] for e in json.loads(body)] == [event["id"]]
    assert arrived - triggered < 0.050, f"answered {1000 * (arrived - triggered):.1f} ms late"
    assert 0 <= arrived - event["timestamp"] < 0.050


@pytest.mark.live
@pytest.mark.parametrize("kind", ["asyncio", "lean"])
def test_live_poll_is_released_when_its_client_hangs_up(kind: str,
                                                        launched: Callable[..., Server],
                                                        waiter: Callable[..., None]) -> None:
    asyncio_server = launched(kind, hold=5)
    last = asyncio_server.stats()["last_event_id"]
    host, port = asyncio_server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"GET /poll_for_updates?last_event_id={last}&timeout=60 HTTP/1.1\r\n"
                     f"Host: {host}\r\n\r\n".encode())
        waiter(lambda: asyncio_server.stats()["waiting"] == 1, what="the poll to be held")
    waiter(lambda: asyncio_server.stats()["waiting"] == 0, timeout=3,
           what="the server to release the abandoned poll")


def read_response(sock: socket.socket, buffered: bytes = b"") -> tuple[list[bytes], bytes, bytes]:
    """One HTTP/1.1 response with a Content-Length (or none, for a 204) off a raw socket:
    its head's lines after the status line, its body, and whatever bytes came after it."""
    while b"\r\n\r\n" not in buffered:
        buffered += sock.recv(65536) or b""
    head, rest = buffered.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")[1:]
    length = next((int(line.split(b":")[1]) for line in lines
                   if line.lower().startswith(b"content-length:")), 0)
    while len(rest) < length:
        rest += sock.recv(65536)
    return lines, rest[:length], rest[length:]


@pytest.mark.live
def test_live_lean_answers_written_by_the_publish_are_what_uvicorn_sends(
        launched: Callable[..., Server], waiter: Callable[..., None]) -> None:
    """`--lean` parks a held poll, and the publish writes its answer (`servers.parking`) with
    the very head uvicorn writes. A poll that closes its connection is declined by the
    publish's write and answered by uvicorn's own `send`: the two answers are compared."""
    server = launched("lean", hold=30)
    last = server.stats()["last_event_id"]
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    request = (f"GET /poll_for_updates?last_event_id={last}&timeout=20 HTTP/1.1\r\n"
               f"Host: {host}\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=5) as parked, \
            socket.create_connection((host, int(port)), timeout=5) as closing:
        parked.sendall(request + b"\r\n")
        closing.sendall(request + b"Connection: close\r\n\r\n")
        waiter(lambda: server.stats()["waiting"] == 2, what="both polls to be held")
        event = server.trigger("parked")
        by_publish, by_uvicorn = read_response(parked), read_response(closing)
        assert closing.recv(1) == b""  # uvicorn closed it, as asked
        parked.sendall(f"GET /poll_for_updates?last_event_id={event['id']}&timeout=0 "
                       f"HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert read_response(parked)[1] == b""  # the connection goes on: a 204 now
    assert by_publish[0][0].startswith(b"date: ") and by_uvicorn[0][0].startswith(b"date: ")
    # the Date line may tick between the two; the rest must be the same, line for line
    assert by_publish[0][1:] + [b"connection: close"] == by_uvicorn[0][1:], (by_publish,
                                                                            by_uvicorn)
    assert by_publish[1] == by_uvicorn[1] and by_publish[2] == b""
    assert [e["id"] for e in json.loads(by_publish[1])] == [event["id"]]
    stats = server.stats()
    assert (stats["waiting"], stats["answered_by_publish"]) == (0, 1), stats


@pytest.mark.live
@pytest.mark.parametrize("kind", ["asyncio", "lean"])
def test_uvicorn_keeps_one_connection_alive_for_a_session(
        kind: str, launched: Callable[..., Server]) -> None:
    server = launched(kind, hold=5)
    before = server.stats()["connections"]  # over the handle's own kept-alive connection
    with requests.Session() as session:
        for _ in range(20):
            reply = session.get(f"{server.url}/poll_for_updates", params={"timeout": 0},
                                timeout=5)
            assert reply.status_code == 204 and reply.headers.get("Connection") != "close"
    assert server.stats()["connections"] - before == 1
