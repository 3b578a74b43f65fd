"""`GET /sse` and `WS /ws` exactly as API.md's "Streams" section says, on the asyncio server.

WebSocket logic runs in process (Starlette's TestClient). SSE never ends, which TestClient
cannot stream, so SSE runs against the same app under a real uvicorn in a thread (`serve`),
where a test may also shorten the keep-alive. Processes and timing are in test_stream_release.py.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from streams_support import RawSSE, Served, TestClient, WebSocketDenialResponse, serve
from websockets.sync.client import connect

from servers import fastapi_server, streams
from servers.startup import ServerConfig


@pytest.fixture
def served() -> Iterator[Served]:
    with serve(retention=5) as server:
        yield server


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = fastapi_server.create_app(ServerConfig(retention=5, token="s3cret"))
    with TestClient(app, raise_server_exceptions=True) as test_client:
        test_client.app_state = app.state  # type: ignore[attr-defined]
        yield test_client


def wait_for(predicate: Any, timeout: float = 3.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# --- SSE ------------------------------------------------------------------------------------


def test_sse_starts_with_retry_then_one_id_and_data_message_per_event(served: Served) -> None:
    first, second = served.publish("one"), served.publish("two\nlines é")
    sse = RawSSE(served.url)
    try:
        assert sse.response.status == 200
        headers = sse.response.headers
        assert headers["Content-Type"].startswith("text/event-stream")
        assert headers["Cache-Control"] == "no-cache"
        assert headers["X-Accel-Buffering"] == "no"
        assert headers["X-Stream-Id"] == served.log.stream
        events = sse.read_until(2)
        compact = [json.dumps(e, ensure_ascii=False, separators=(",", ":")) for e in (first,
                                                                                    second)]
        assert bytes(sse.raw) == (f"retry: {streams.RETRY_MS}\n\n"
                                  f"id: 1\ndata: {compact[0]}\n\n"
                                  f"id: 2\ndata: {compact[1]}\n\n").encode()
        assert [json.loads(e.data) for e in events] == [first, second]
        assert [e.last_event_id for e in events] == ["1", "2"]
        assert sse.parser.retry_ms == streams.RETRY_MS
        live = served.publish("live")
        assert json.loads(sse.read_until(3)[2].data) == live  # then new ones as published
    finally:
        sse.close()


def test_sse_resumes_from_last_event_id_over_the_query(served: Served) -> None:
    for i in range(4):
        served.publish(f"m{i}")
    for query, headers, first_id in [("?last_event_id=1", {}, 2),
                                     ("?last_event_id=1", {"Last-Event-ID": "3"}, 4),
                                     ("", {"Last-Event-ID": "2"}, 3),
                                     ("?last_event_id=bad", {"Last-Event-ID": "3"}, 4)]:
        sse = RawSSE(served.url, query, headers)
        try:
            assert json.loads(sse.read_until(1)[0].data)["id"] == first_id, (query, headers)
        finally:
            sse.close()


def test_sse_past_retention_sends_gone_with_the_410_body_then_the_retained(served: Served) -> None:
    for i in range(12):
        served.publish(f"m{i}")
    oldest = served.log.oldest_id
    sse = RawSSE(served.url, "?last_event_id=1")
    try:
        gone, *retained = sse.read_until(1 + 12 - oldest + 1)
        body = json.loads(gone.data)
        assert gone.event == "gone"
        assert body["error"] == "gone" and body["oldest_id"] == oldest and body["detail"]
        assert [json.loads(e.data)["id"] for e in retained] == list(range(oldest, 13))
    finally:
        sse.close()


@pytest.mark.parametrize("query, headers", [("?last_event_id=x", {}), ("?last_event_id=-1", {}),
                                            ("", {"Last-Event-ID": "abc"}),
                                            ("?last_event_id=2", {"Last-Event-ID": "1.5"})])
def test_a_bad_sse_cursor_gets_the_polls_json_400_not_a_stream(client: TestClient, query: str,
                                                              headers: dict[str, str]) -> None:
    reply = client.get("/sse" + query, headers=headers)
    assert reply.status_code == 400
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["error"] == "bad_parameter" and reply.json()["detail"]
    assert reply.headers["X-Stream-Id"]


def test_a_quiet_sse_stream_sends_keep_alive_comments(monkeypatch: pytest.MonkeyPatch) -> None:
    assert streams.KEEPALIVE_S <= 15  # API.md: a comment at least every 15 s
    monkeypatch.setattr(streams, "KEEPALIVE_S", 0.2)
    with serve() as served:
        sse = RawSSE(served.url)
        try:
            deadline = time.monotonic() + 3
            while sse.parser.comments < 3:
                assert time.monotonic() < deadline, "no keep-alive comments"
                sse.raw += (chunk := sse.response.read1(65536))
                sse.events += sse.parser.feed(chunk)
            assert b": keep-alive\n\n" in sse.raw and not sse.events
        finally:
            sse.close()


def test_one_publish_reaches_a_long_poll_an_sse_stream_and_a_websocket(served: Served,
                                                                      pool: Any) -> None:
    import requests

    sse = RawSSE(served.url)
    sse.read_until(0)
    with connect(served.ws_url + "/ws") as ws:
        assert json.loads(ws.recv(timeout=2))["type"] == "hello"
        poll = pool.submit(requests.get, served.url + "/poll_for_updates", timeout=10,
                           params={"timeout": 5})
        wait_for(lambda: served.stats()["waiting"] == 1, what="the poll to be held")
        assert served.stats()["streams"] == 2
        event = served.publish("to everyone")
        assert json.loads(ws.recv(timeout=2))["event"] == event
        assert json.loads(sse.read_until(1)[0].data) == event
        assert poll.result().json() == [event]
    sse.close()


def test_stopping_the_server_ends_every_stream_promptly() -> None:
    from websockets.exceptions import ConnectionClosed

    with ExitStack() as stack:
        with serve() as served:
            sse = RawSSE(served.url)
            stack.callback(sse.close)
            sse.read_until(0)
            ws = stack.enter_context(connect(served.ws_url + "/ws"))
            ws.recv(timeout=2)
            started = time.monotonic()
        assert time.monotonic() - started < 3
        # The chunked body ends cleanly (read() raises IncompleteRead if it is cut off).
        assert sse.response.read() == f"retry: {streams.RETRY_MS}\n\n".encode()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=2)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012


# --- WebSocket --------------------------------------------------------------------------------


def test_ws_says_hello_first_then_replays_after_the_cursor(client: TestClient) -> None:
    log = client.app_state.log  # type: ignore[attr-defined]
    published = [log.publish(f"m{i}") for i in range(4)]
    with client.websocket_connect("/ws?last_event_id=2") as ws:
        assert ws.receive_json() == {"type": "hello", "stream": log.stream, "last_event_id": 4}
        assert [ws.receive_json() for _ in range(2)] == [
            {"type": "event", "event": e} for e in published[2:]]
        live = log.publish("live")
        assert ws.receive_json() == {"type": "event", "event": live}


def test_ws_past_retention_sends_gone_before_the_retained_events(client: TestClient) -> None:
    log = client.app_state.log  # type: ignore[attr-defined]
    for i in range(12):
        log.publish(f"m{i}")
    with client.websocket_connect("/ws?last_event_id=0") as ws:
        assert ws.receive_json()["type"] == "hello"
        gone = ws.receive_json()
        assert gone["type"] == "gone" and gone["error"] == "gone"
        assert gone["oldest_id"] == log.oldest_id and gone["detail"]
        assert ws.receive_json()["event"]["id"] == log.oldest_id


def test_ws_publish_needs_the_token_and_is_answered_published(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        ws.receive_json()
        ws.send_text('{"type": "publish", "message": "no token"}')
        refused = ws.receive_json()
        assert refused["type"] == "error" and refused["error"] == "unauthorized"
    with client.websocket_connect("/ws", headers={"Authorization": "Bearer s3cret"}) as ws:
        ws.receive_json()
        ws.send_text('{"type": "publish", "message": "hello"}')
        frames = [ws.receive_json() for _ in range(2)]
        published = next(f for f in frames if f["type"] == "published")
        assert published["event"]["message"] == "hello"
        assert {"type": "event", "event": published["event"]} in frames


@pytest.mark.parametrize("frame, code", [
    ("not json", "malformed_json"), ("[1, 2]", "bad_frame"), ('{"message": "x"}', "bad_frame"),
    ('{"type": "subscribe"}', "bad_frame"), (b"\x00\x01", "bad_frame"),
    ('{"type": "publish", "message": 7}', "bad_parameter"),
    (json.dumps({"type": "publish", "message": "x" * 5000}), "message_too_long"),
    ("[" * 100_000, "malformed_json"),
])
def test_a_bad_client_frame_gets_an_error_frame_and_the_connection_stays(
        client: TestClient, frame: str | bytes, code: str) -> None:
    with client.websocket_connect("/ws", headers={"Authorization": "Bearer s3cret"}) as ws:
        ws.receive_json()
        ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_text(frame)
        error = ws.receive_json()
        assert error["type"] == "error" and error["error"] == code and error["detail"]
        assert set(error) == {"type", "error", "detail"}
        ws.send_text('{"type": "publish", "message": "still here"}')
        assert any(ws.receive_json()["type"] == "published" for _ in range(2))


@pytest.mark.parametrize("query", ["?last_event_id=x", "?last_event_id=-5",
                                   "?last_event_id=99999999999999999999"])
def test_a_bad_ws_cursor_is_refused_with_the_polls_json_400(client: TestClient,
                                                           query: str) -> None:
    with pytest.raises(WebSocketDenialResponse) as refused:
        with client.websocket_connect("/ws" + query):
            pass
    assert refused.value.status_code == 400
    assert refused.value.json()["error"] == "bad_parameter"


# --- release --------------------------------------------------------------------------------


def test_streams_count_drops_when_clients_close_or_vanish(served: Served) -> None:
    sse = RawSSE(served.url)
    sse.read_until(0)
    with connect(served.ws_url + "/ws") as ws:
        ws.recv(timeout=2)
        vanishing = socket.create_connection(urlsplit_host_port(served.url))
        vanishing.sendall(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for(lambda: served.stats()["streams"] == 3, what="three streams")
        sse.close()
    wait_for(lambda: served.stats()["streams"] == 1, what="closed streams to be released")
    # Gone without a goodbye: a reset (SO_LINGER 0), as when a process is killed mid-read.
    vanishing.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    vanishing.close()
    wait_for(lambda: served.stats()["streams"] == 0, what="a reset stream to be released")


def urlsplit_host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def test_a_client_leaving_does_not_stop_the_other_streams(client: TestClient) -> None:
    """Every stream awaits one shared future; a stream cancelled because its client left must
    not cancel that future for the others."""
    log = client.app_state.log  # type: ignore[attr-defined]
    with client.websocket_connect("/ws") as staying:
        staying.receive_json()
        with client.websocket_connect("/ws") as leaving:
            leaving.receive_json()
        event = log.publish("after one left")
        assert staying.receive_json() == {"type": "event", "event": event}
