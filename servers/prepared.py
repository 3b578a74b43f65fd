"""A response whose bytes are ready: sent whole in one call, below ASGI's messages. Not the lesson.

When one publish wakes 10,000 held polls, each answer is the same few hundred bytes
(`servers.answers` encodes them once). Sent as ASGI messages, every one of them still passes
through each middleware's `send` wrapper, and through uvicorn's `send`, which checks each header
against two regular expressions and builds the head again: `make bench` profiled that as most of
the server's Python time per answer (docs/benchmarks.md). The kit's uvicorn protocol
(`servers.uvicorn_guard.GuardedProtocol`) offers the ASGI extension `polling.lab.prepared`
instead, as a server may offer Starlette's `FileResponse` the `http.response.pathsend`
extension: a callable that writes the status line, uvicorn's own default headers (`Date`,
`Server`, `X-Served-By`), the answer's headers and its body in one write, and completes the
request as uvicorn's `send` would.

`send_prepared` is the caller's side, `send_whole` the server's. The server may decline
(return False, having sent nothing) whenever uvicorn's `send` would do more than that: then the
caller sends the ASGI messages as usual. Where no server offers the extension (an
in-process test client, another ASGI server), `send_prepared` declines too. A middleware that
watches `send` does not see a response sent this way; none of the kit's does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.types import Scope
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

#: The extension's name: its value holds `send`, a callable (scope, status, head, body) -> bool.
EXTENSION = "polling.lab.prepared"
#: (scope, status code, the header lines after uvicorn's own, body) -> whether it was sent
Send = Callable[[Scope, int, bytes, bytes], bool]


def header_lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    """Raw headers as the lines of an HTTP/1.1 head: `name: value\\r\\n` each."""
    return b"".join(b"%s: %s\r\n" % (name, value) for name, value in headers)


def send_prepared(scope: Scope, status: int, head: bytes, body: bytes) -> bool:
    """Send a whole response through the server's extension; False (nothing sent) where the
    server offers none or declines, and the caller must send the ASGI messages instead.

    `head` is the response's header lines (`header_lines`), without the server's defaults.
    """
    send: Send | None = scope.get("extensions", {}).get(EXTENSION, {}).get("send")
    return send is not None and send(scope, status, head, body)


# --- the server's side: uvicorn's httptools protocol (servers.uvicorn_guard.GuardedProtocol) ---


def send_whole(protocol: HttpToolsProtocol, scope: Scope, status: int, head: bytes,
               body: bytes) -> bool:
    """Write the response whole on `protocol`'s connection, in one write, then complete the
    request as uvicorn's own `send` completes it (its event set, `on_response` called, so the
    keep-alive timer and the next request on the connection go on as usual).

    Declines (False, nothing sent) wherever uvicorn's `send` would do more than write these
    bytes: a request that is not the connection's current one, a response already started, a
    HEAD request, a connection that closes after it, writes paused by flow control, an access
    log to write, a client already gone. The transport is `servers.fast_path.OneWrite`.
    """
    cycle: Any = protocol.cycle
    if (cycle is None or cycle.scope is not scope or cycle.response_started
            or cycle.disconnected or not cycle.keep_alive or cycle.flow.write_paused
            or cycle.access_log or scope["method"] == "HEAD"):
        return False
    cycle.response_started = cycle.response_complete = True
    cycle.waiting_for_100_continue = False
    defaults = _default_lines(protocol.server_state.default_headers)
    transport: Any = protocol.transport
    transport.write_whole(b"".join((STATUS_LINE[status], defaults, head, b"\r\n", body)))
    cycle.message_event.set()
    cycle.on_response()
    return True


#: uvicorn's default headers (Date, Server, X-Served-By) as head lines, with the list they were
#: encoded from: uvicorn makes a new list when the date changes, once a second.
_defaults: tuple[object, bytes] = (None, b"")


def _default_lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    global _defaults
    if _defaults[0] is not headers:
        _defaults = (headers, header_lines(headers))
    return _defaults[1]
