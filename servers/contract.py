"""The wire contract every bundled server speaks (docs/api.md): events, headers, rules, errors.

The servers in this package differ only in *how they wait* for the next event. What an event
looks like, which parameters are valid, which errors a client gets and who may publish is
decided here, once, so that placing two server files side by side shows nothing but the waiting.
"""

from __future__ import annotations

import hmac
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypedDict

MAX_MESSAGE_CHARS = 4096
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_TIMEOUT_S = 300.0
DEFAULT_MESSAGE = "Manual event triggered!"
STREAM_HEADER = "X-Stream-Id"
SERVED_BY_HEADER = "X-Served-By"  # the pid of the process that answered, on every response
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class Event(TypedDict):
    id: int
    timestamp: float
    message: str


class ApiError(Exception):
    """A request the server refuses, with the JSON body and status that API.md prescribes."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        close_connection: bool = False,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})
        #: Close the connection after this answer, so that a refused client frees its
        #: descriptor at once instead of idling on a kept-alive connection.
        self.close_connection = close_connection
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail, **self.extra}

    def json_bytes(self) -> bytes:
        """`body()` as compact JSON, for answers sent below the framework."""
        return json.dumps(self.body(), ensure_ascii=False, separators=(",", ":")).encode()


def health(name: str, stream: str) -> dict[str, Any]:
    """The body of `GET /health`: the launcher polls it until the server answers.

    `pid` says which process answered, when several servers stand behind one gateway.
    """
    return {"status": "ok", "server": name, "stream": stream, "pid": os.getpid()}


def served_by() -> str:
    """This process's id, as `X-Served-By` carries it (read each time: a fork changes it)."""
    return str(os.getpid())


def triggered(event: Event) -> dict[str, Any]:
    """The body of a 201 from `POST /trigger_event`."""
    return {"status": "event triggered", "event": event}


# --- parameter rules -------------------------------------------------------------------------


@dataclass(frozen=True)
class PollParams:
    last_event_id: int
    limit: int
    timeout: float


def _bad(name: str, value: str, rule: str) -> ApiError:
    return ApiError(400, "bad_parameter", f"{name}={value!r} is not valid: {rule}.")


def _int_param(args: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = args.get(name)
    if raw is None:
        return default
    rule = f"use an integer from {low} to {high}" if high < 2**62 else f"use an integer >= {low}"
    try:
        value = int(raw.strip())
    except ValueError:
        raise _bad(name, raw, rule) from None
    if not low <= value <= high:
        raise _bad(name, raw, rule)
    return value


def parse_poll_params(args: Mapping[str, str], default_timeout: float) -> PollParams:
    """Validate `last_event_id`, `limit` and `timeout` once, the same way for every server."""
    last_event_id = _int_param(args, "last_event_id", 0, 0, 2**62)
    limit = _int_param(args, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    raw = args.get("timeout")
    timeout = default_timeout
    if raw is not None:
        rule = f"use a number of seconds from 0 to {MAX_TIMEOUT_S:g}"
        try:
            timeout = float(raw.strip())
        except ValueError:
            raise _bad("timeout", raw, rule) from None
        if not (math.isfinite(timeout) and 0 <= timeout <= MAX_TIMEOUT_S):
            raise _bad("timeout", raw, rule)
    return PollParams(last_event_id, limit, timeout)


def parse_message(body: bytes, query: Mapping[str, str]) -> str:
    """The message of a `/trigger_event`: from the JSON body, else `?message=`, else the default."""
    message: object = None
    if body.strip():
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):  # nesting too deep: also bad
            raise ApiError(
                400,
                "malformed_json",
                'The request body is not valid JSON; send {"message": "..."} or no body at all.',
            ) from None
        if not isinstance(data, dict):
            raise ApiError(
                422, "bad_body", 'The JSON body must be an object such as {"message": "hello"}.'
            )
        message = data.get("message")
    if message is None:
        message = query.get("message", DEFAULT_MESSAGE)
    if not isinstance(message, str):
        raise ApiError(422, "bad_parameter", "message must be a JSON string, for example \"hi\".")
    try:
        message.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate such as "\ud800": valid JSON, not valid text
        raise ApiError(
            422, "bad_parameter", "message must be valid Unicode text; it contains a lone "
            "surrogate such as \\ud800, which cannot be sent back as UTF-8."
        ) from None
    if len(message) > MAX_MESSAGE_CHARS:
        raise ApiError(
            413,
            "message_too_long",
            f"The message has {len(message)} characters; the limit is {MAX_MESSAGE_CHARS}.",
        )
    return message


# --- who may publish, and which cursor is whose ------------------------------------------------


def check_token(token: str | None, authorization: str | None) -> None:
    """Refuse a publish without the server's `token`, when it was started with one.

    The header must be `Bearer <token>`, the scheme in any case (RFC 9110 section 11.1), the
    token exactly. Both sides are compared as bytes: the header as the client sent it (servers
    hand headers over decoded as Latin-1), the token as UTF-8. A string comparison would raise
    on non-ASCII text and turn a wrong header into a 500.
    """
    if token is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if not (scheme.lower() == "bearer"
            and hmac.compare_digest(_header_bytes(given), token.encode("utf-8"))):
        raise ApiError(
            401,
            "unauthorized",
            "This server was started with --token; send the header 'Authorization: Bearer "
            "<token>' (connect(url, token) does it for you).",
        )


def _header_bytes(value: str) -> bytes:
    """A header value as the bytes that arrived (WSGI and ASGI servers decode them as Latin-1)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:  # not from the wire (an in-process client): still only a 401
        return value.encode("utf-8", "surrogatepass")


def other_stream(stream: str, claimed: str | None) -> bool:
    """True when a poll says (in `X-Stream-Id`) that its cursor belongs to another event log.

    That client has not yet seen this server restart. Holding its poll would keep it waiting a
    whole hold for ids it has already passed; a 204 now, carrying this log's `stream` id, lets
    it reset its cursor at once. Clients that send no `X-Stream-Id` are held as usual.
    """
    return claimed is not None and claimed != stream


# --- routing errors --------------------------------------------------------------------------

ALLOWED_METHODS = {
    "/health": "GET",
    "/events": "GET",
    "/poll_for_updates": "GET",
    "/stats": "GET",
    "/trigger_event": "POST",
}


def not_found(path: str) -> ApiError:
    return ApiError(
        404,
        "not_found",
        f"There is no {path}; the endpoints are /health, /events, /poll_for_updates, "
        "/trigger_event and /stats.",
    )


def method_not_allowed(method: str, path: str, allowed: str) -> ApiError:
    return ApiError(
        405, "method_not_allowed", f"{path} does not accept {method}; use {allowed}.",
        headers={"Allow": allowed},
    )


def framework_error(status: int, method: str, path: str, detail: str) -> ApiError:
    """The API's error for one the web framework raised itself (no route, wrong method, ...)."""
    if status == 405:
        return method_not_allowed(method, path, ALLOWED_METHODS.get(path, "GET"))
    if status == 404:
        return not_found(path)
    return ApiError(status, "bad_request", detail)


# --- answers given below the framework ------------------------------------------------------


def request_timeout(seconds: float) -> ApiError:
    """A request whose line, headers or body did not all arrive within `seconds`."""
    return ApiError(
        408, "request_timeout",
        f"The request was not complete after {seconds:g} s (the server's --request-timeout), "
        "so the server closed the connection; send the request line, headers and body at once.",
    )


def unreadable_request(what: str) -> ApiError:
    """A request the HTTP parser could not read (`what` says what was wrong with it)."""
    return ApiError(
        400, "bad_request",
        f"The request could not be read as HTTP/1.1 ({what}); the server closed the "
        "connection. Check the request line and headers your client sends.",
    )


def raw_response(error: ApiError) -> bytes:
    """`error` as a whole HTTP/1.1 response that closes its connection.

    For the answers a server gives below its framework, from the HTTP connection itself (a
    request that never completed, one the parser refused), so that they too are the API's JSON.
    """
    body = error.json_bytes()
    lines = [f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}",
             "Content-Type: application/json", f"Content-Length: {len(body)}",
             "Connection: close", f"{SERVED_BY_HEADER}: {served_by()}",
             *(f"{k}: {v}" for k, v in error.headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
