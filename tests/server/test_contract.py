"""servers/contract.py: the parameter rules, the messages, and the errors every server shares."""

from __future__ import annotations

import os

import pytest

from servers.contract import (
    ALLOWED_METHODS,
    DEFAULT_MESSAGE,
    MAX_MESSAGE_CHARS,
    ApiError,
    check_token,
    framework_error,
    health,
    other_stream,
    parse_message,
    parse_poll_params,
    triggered,
)

# --- parameter rules --------------------------------------------------------------------------


def test_poll_params_defaults() -> None:
    params = parse_poll_params({}, default_timeout=12.5)
    assert (params.last_event_id, params.limit, params.timeout) == (0, 100, 12.5)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"last_event_id": "0"}, (0, 100, 30.0)),
        ({"last_event_id": " 42 "}, (42, 100, 30.0)),
        ({"limit": "1"}, (0, 1, 30.0)),
        ({"limit": "1000"}, (0, 1000, 30.0)),
        ({"timeout": "0"}, (0, 100, 0.0)),
        ({"timeout": "0.25"}, (0, 100, 0.25)),
        ({"timeout": "300"}, (0, 100, 300.0)),
    ],
)
def test_poll_params_accept_the_documented_range(args: dict[str, str],
                                                 expected: tuple[int, int, float]) -> None:
    params = parse_poll_params(args, default_timeout=30.0)
    assert (params.last_event_id, params.limit, params.timeout) == expected


@pytest.mark.parametrize(
    "args",
    [
        {"last_event_id": "abc"},
        {"last_event_id": "1.5"},
        {"last_event_id": ""},
        {"last_event_id": "-1"},
        {"last_event_id": str(2**63)},
        {"last_event_id": "9" * 5000},
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": str(10**9)},
        {"timeout": "-0.1"},
        {"timeout": "300.5"},
        {"timeout": "1e9"},
        {"timeout": "soon"},
        {"timeout": "nan"},
        {"timeout": "NaN"},
        {"timeout": "inf"},
        {"timeout": "-inf"},
    ],
)
def test_poll_params_reject_with_400(args: dict[str, str]) -> None:
    with pytest.raises(ApiError) as raised:
        parse_poll_params(args, default_timeout=30.0)
    assert raised.value.status == 400
    assert raised.value.code == "bad_parameter"
    name = next(iter(args))
    assert raised.value.detail.startswith(f"{name}=")


def test_message_from_body_then_query_then_default() -> None:
    assert parse_message(b'{"message": "body"}', {"message": "query"}) == "body"
    assert parse_message(b"", {"message": "query"}) == "query"
    assert parse_message(b"{}", {"message": "query"}) == "query"
    assert parse_message(b"  ", {}) == DEFAULT_MESSAGE
    assert parse_message(b'{"message": ""}', {}) == ""
    assert parse_message('{"message": "héllo ✓"}'.encode(), {}) == "héllo ✓"
    assert parse_message(b'{"message": "' + b"x" * MAX_MESSAGE_CHARS + b'"}', {}) == (
        "x" * MAX_MESSAGE_CHARS
    )


@pytest.mark.parametrize(
    ("body", "query", "status", "code"),
    [
        (b"{not json", {}, 400, "malformed_json"),
        (b"\xff\xfe\x00", {}, 400, "malformed_json"),
        (b"[" * 100_000 + b"]" * 100_000, {}, 400, "malformed_json"),  # too deep to parse
        (b'["hello"]', {}, 422, "bad_body"),
        (b'"hello"', {}, 422, "bad_body"),
        (b'{"message": 5}', {}, 422, "bad_parameter"),
        (b'{"message": ["a"]}', {}, 422, "bad_parameter"),
        (b'{"message": "' + b"x" * 4097 + b'"}', {}, 413, "message_too_long"),
        (b"", {"message": "x" * 4097}, 413, "message_too_long"),
    ],
)
def test_bad_messages_are_refused(body: bytes, query: dict[str, str], status: int,
                                  code: str) -> None:
    with pytest.raises(ApiError) as raised:
        parse_message(body, query)
    assert (raised.value.status, raised.value.code) == (status, code)
    assert raised.value.detail


# --- who may publish, whose cursor, and the framework's own errors ------------------------------


def test_check_token_lets_anyone_publish_without_a_token_and_only_holders_with_one() -> None:
    check_token(None, None)
    check_token(None, "Bearer anything")
    check_token("s3cret", "Bearer s3cret")
    for header in (None, "", "s3cret", "Bearer wrong", "Bearer s3cret "):
        with pytest.raises(ApiError) as refused:
            check_token("s3cret", header)
        assert (refused.value.status, refused.value.code) == (401, "unauthorized")


def test_other_stream_only_when_a_different_stream_is_claimed() -> None:
    assert other_stream("abc", "def")
    assert not other_stream("abc", "abc")
    assert not other_stream("abc", None)


@pytest.mark.parametrize(("status", "code"), [(404, "not_found"), (405, "method_not_allowed"),
                                              (400, "bad_request")])
def test_framework_errors_become_the_apis_errors(status: int, code: str) -> None:
    error = framework_error(status, "DELETE", "/events", "Bad request.")
    assert (error.status, error.code) == (status, code)
    if status == 405:
        assert error.headers == {"Allow": ALLOWED_METHODS["/events"]}
        assert "use GET" in error.detail
    if status == 404:
        assert "/poll_for_updates" in error.detail


def test_health_and_triggered_bodies() -> None:
    assert health("demo", "s1") == {"status": "ok", "server": "demo", "stream": "s1",
                                    "pid": os.getpid()}
    event = {"id": 1, "timestamp": 1.0, "message": "m"}
    assert triggered(event) == {"status": "event triggered", "event": event}  # type: ignore[arg-type]


@pytest.mark.parametrize("header", ["Bearer s3cret", "bearer s3cret", "BEARER s3cret",
                                    "BeArEr s3cret"])
def test_the_scheme_is_case_insensitive_and_the_token_is_not(header: str) -> None:
    check_token("s3cret", header)
    with pytest.raises(ApiError):
        check_token("s3cret", header.upper())  # BEARER S3CRET: the wrong token


@pytest.mark.parametrize("header", ["Bearer clé", "Bearer ✓", "Bearer \udcff", "Bearer \x00"])
def test_a_non_ascii_header_is_a_401_not_a_500(header: str) -> None:
    with pytest.raises(ApiError) as refused:
        check_token("s3cret", header)
    assert refused.value.status == 401
    with pytest.raises(ApiError):
        check_token("clé", header)


def test_a_non_ascii_token_matches_its_utf8_bytes_as_a_server_hands_them_over() -> None:
    as_received = "clé".encode().decode("latin-1")  # how WSGI and ASGI pass header bytes
    check_token("clé", f"Bearer {as_received}")


def test_raw_response_is_a_whole_http_answer_with_the_json_error() -> None:
    import json

    from servers.contract import raw_response, request_timeout

    raw = raw_response(request_timeout(2))
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"Connection: close" in head and f"Content-Length: {len(body)}".encode() in head
    assert json.loads(body)["error"] == "request_timeout"
