"""Bad input to the streams, generated: cursors, headers and WebSocket frames.

API.md: input from a client never produces a 5xx, a bad cursor gets the polls' JSON 400 (not a
stream), and a bad WebSocket frame gets an error frame with the connection kept open. SSE
requests go over real sockets to the app under uvicorn in a thread (a stream never ends, so
only its status and headers are read); WebSocket frames go through Starlette's TestClient,
which re-raises any exception in the handler, so a crashed handler fails the test.
"""

from __future__ import annotations

import http.client
import json
from collections import Counter
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from streams_support import Served, TestClient, WebSocketDenialResponse, serve

from servers import fastapi_server
from servers.startup import ServerConfig

TOTALS: Counter[str] = Counter()
FIXTURE_OK = [HealthCheck.function_scoped_fixture]  # module-scoped servers, reused on purpose
CURSORS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.text(max_size=30),
    st.sampled_from(["", " ", "0", "007", "1e3", "0x10", "+5", " 4 ", "NaN", "٣", "1_000"]),
)
# What an HTTP field value may hold: visible Latin-1 characters, spaces and tabs.
HEADER_VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                      exclude_characters="\x7f"), max_size=40)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with serve(retention=5) as server:
        for i in range(12):
            server.publish(f"m{i}")
        yield server
    print(f"\nstream fuzz: {sum(TOTALS.values())} generated inputs, {dict(sorted(TOTALS.items()))}")


def sse_status(served: Served, query: str, headers: dict[str, str]) -> tuple[int, bytes]:
    parts = urlsplit(served.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        conn.request("GET", "/sse" + query, headers=headers)
        response = conn.getresponse()
        body = b"" if response.status == 200 else response.read()
        return response.status, body
    finally:
        conn.close()


@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURE_OK)
@given(cursor=st.one_of(st.none(), CURSORS), header=st.one_of(st.none(), HEADER_VALUES))
@example(cursor="1", header="3")
@example(cursor="abc", header=None)
@example(cursor=None, header="\t-1 ")
def test_sse_cursors_and_headers_get_a_stream_or_the_json_400(served: Served, cursor: str | None,
                                                             header: str | None) -> None:
    query = "" if cursor is None else "?last_event_id=" + quote(cursor, safe="")
    headers = {} if header is None else {"Last-Event-ID": header}
    status, body = sse_status(served, query, headers)
    TOTALS[f"sse {status}"] += 1
    assert status in (200, 400), (query, headers, status, body)
    if status == 400:
        error = json.loads(body)
        assert error["error"] == "bad_parameter" and error["detail"]


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = fastapi_server.create_app(ServerConfig(retention=5, token="s3cret"))
    with TestClient(app, raise_server_exceptions=True) as test_client:
        for i in range(12):
            app.state.log.publish(f"m{i}")
        yield test_client


@settings(max_examples=200, deadline=None, suppress_health_check=FIXTURE_OK)
@given(cursor=CURSORS)
def test_ws_cursors_get_a_hello_or_the_json_400(client: TestClient, cursor: str) -> None:
    try:
        with client.websocket_connect("/ws?last_event_id=" + quote(cursor, safe="")) as ws:
            assert ws.receive_json()["type"] == "hello"
            TOTALS["ws hello"] += 1
    except WebSocketDenialResponse as refused:
        TOTALS[f"ws {refused.status_code}"] += 1
        assert refused.status_code == 400 and refused.json()["error"] == "bad_parameter"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8),
                                                                      children, max_size=3),
    max_leaves=8,
)
FRAMES = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    JSON_VALUES.map(json.dumps),
    st.fixed_dictionaries({"type": st.sampled_from(["publish", "PUBLISH", "", "event"])},
                          optional={"message": JSON_VALUES | st.text(max_size=5000)}).map(
        json.dumps),
)


@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURE_OK)
@given(frames=st.lists(FRAMES, min_size=1, max_size=4),
       token=st.sampled_from([None, "s3cret", "x"]))
def test_ws_frames_get_an_answer_each_and_the_connection_stays(client: TestClient,
                                                              frames: list[str | bytes],
                                                              token: str | None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with client.websocket_connect("/ws?last_event_id=12", headers=headers) as ws:
        assert ws.receive_json()["type"] == "hello"
        for frame in frames:
            ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_text(frame)
            reply = ws.receive_json()
            while reply["type"] in ("event", "gone"):  # what the log holds, and a publish
                reply = ws.receive_json()
            TOTALS[f"ws {reply['type']} {reply.get('error', '')}".strip()] += 1
            assert reply["type"] in ("published", "error"), reply
            if reply["type"] == "error":
                assert set(reply) == {"type", "error", "detail"} and reply["detail"]
            else:
                assert token == "s3cret"
