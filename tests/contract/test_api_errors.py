"""API.md "Errors": bad input gets a 4xx with a JSON {"error", "detail"} body, on every server.

"Input from a client never produces a 5xx": each case runs against both apps in process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import InProcessApi, Reply


def assert_api_error(reply: Reply, status: int, code: str | None = None) -> dict[str, Any]:
    """The reply is the documented error: this status, JSON, a code and an actionable detail."""
    assert reply.status == status, (reply.status, reply.content[:300])
    assert reply.headers.get("Content-Type", "").startswith("application/json")
    body: dict[str, Any] = reply.json()
    assert isinstance(body.get("error"), str) and body["error"]
    assert isinstance(body.get("detail"), str) and len(body["detail"]) > 10
    if code is not None:
        assert body["error"] == code
    return body


BAD_POLL_PARAMETERS = [
    ({"last_event_id": "abc"}, "last_event_id"),
    ({"last_event_id": "1.5"}, "last_event_id"),
    ({"last_event_id": "-1"}, "last_event_id"),
    ({"last_event_id": "9" * 30}, "last_event_id"),
    ({"timeout": "-1"}, "timeout"),
    ({"timeout": "1e9"}, "timeout"),
    ({"timeout": "301"}, "timeout"),
    ({"timeout": "ten"}, "timeout"),
    ({"timeout": "nan"}, "timeout"),
    ({"timeout": "inf"}, "timeout"),
    ({"timeout": "-inf"}, "timeout"),
    ({"limit": "0"}, "limit"),
    ({"limit": "-5"}, "limit"),
    ({"limit": "1001"}, "limit"),
    ({"limit": str(10**9)}, "limit"),
    ({"limit": "many"}, "limit"),
]


@pytest.mark.parametrize("path", ["/events", "/poll_for_updates"])
@pytest.mark.parametrize(("params", "name"), BAD_POLL_PARAMETERS,
                         ids=[f"{next(iter(p))}={v}"[:30] for p, _ in BAD_POLL_PARAMETERS
                              for v in p.values()])
def test_bad_poll_parameter_is_400(api: InProcessApi, path: str, params: dict[str, str],
                                   name: str) -> None:
    body = assert_api_error(api.get(path, **params), 400, "bad_parameter")
    assert name in body["detail"]


@pytest.mark.parametrize("path", ["/events", "/poll_for_updates"])
def test_bad_parameter_is_refused_before_anything_is_counted_as_empty(api: InProcessApi,
                                                                      path: str) -> None:
    assert_api_error(api.get(path, limit=0), 400)
    assert api.stats()["empty_responses"] == 0
    assert api.stats()["waiting"] == 0


@pytest.mark.parametrize(
    "params",
    [{"last_event_id": "0", "limit": "1"}, {"limit": "1000"}, {"timeout": "0"},
     {"timeout": "300"}, {"last_event_id": str(2**40)}],
)
def test_edges_of_the_documented_ranges_are_accepted(api: InProcessApi,
                                                     params: dict[str, str]) -> None:
    # /events ignores `timeout` but validates it the same way, so 300 costs no waiting here.
    reply = api.get("/events", **params)
    assert reply.status == 200
    assert reply.json() == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "malformed_json"),
        (b"\xff\xfe\xfd", 400, "malformed_json"),
        (b"[" * 50_000 + b"]" * 50_000, 400, "malformed_json"),
        (b'["a", "list"]', 422, "bad_body"),
        (b"42", 422, "bad_body"),
        (b'{"message": 5}', 422, None),
        (b'{"message": {"text": "hi"}}', 422, None),
        (b'{"message": true}', 422, None),
        (b'{"message": "' + b"x" * 4097 + b'"}', 413, "message_too_long"),
    ],
    ids=["malformed", "not-utf8", "nested-too-deep", "list", "number", "message-int",
         "message-object", "message-bool", "message-4097"],
)
def test_bad_trigger_body(api: InProcessApi, body: bytes, status: int, code: str | None) -> None:
    reply = api.request("POST", "/trigger_event", body=body)
    assert_api_error(reply, status, code)
    assert api.stats()["events_published"] == 0


def test_oversized_query_message_is_413(api: InProcessApi) -> None:
    assert_api_error(api.trigger(message="x" * 4097), 413, "message_too_long")
    assert_api_error(api.request("POST", "/trigger_event", params={"message": "y" * 4097}),
                     413, "message_too_long")
    assert api.trigger(message="x" * 4096).status == 201  # the limit itself is allowed


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("DELETE", "/events", "GET"), ("GET", "/trigger_event", "POST"),
     ("POST", "/poll_for_updates", "GET"), ("PUT", "/stats", "GET"),
     ("DELETE", "/health", "GET")],
)
def test_wrong_method_is_405(api: InProcessApi, method: str, path: str, allowed: str) -> None:
    reply = api.request(method, path)
    body = assert_api_error(reply, 405, "method_not_allowed")
    assert allowed in reply.headers["Allow"]
    assert path in body["detail"]


@pytest.mark.parametrize("path", ["/nope", "/events/1", "/poll", "/"])
def test_unknown_path_is_404(api: InProcessApi, path: str) -> None:
    body = assert_api_error(api.get(path), 404, "not_found")
    assert "/poll_for_updates" in body["detail"]  # it tells the learner the real endpoints


@pytest.mark.parametrize("kind", ["flask", "fastapi", "lean"])
@pytest.mark.parametrize("path", ["/events", "/poll_for_updates"])
def test_cursor_older_than_retention_is_410_with_oldest_id(
        make_api: Callable[..., InProcessApi], kind: str, path: str) -> None:
    api = make_api(kind, retention=5)
    api.publish(20)
    reply = api.get(path, last_event_id=3, timeout=0)
    body = assert_api_error(reply, 410, "gone")
    assert body["oldest_id"] == 16
    assert reply.headers["X-Stream-Id"] == api.log.stream
    resumed = api.get(path, last_event_id=body["oldest_id"] - 1, timeout=0)
    assert [e["id"] for e in resumed.json()] == [16, 17, 18, 19, 20]
