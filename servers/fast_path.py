"""TUNING, not the lesson: what the asyncio server does only to go faster under `make bench`.

Read `servers.fastapi_server` to learn asyncio long polling; nothing here changes how it waits
or what it answers. Each piece below was measured by `make bench` (docs/benchmarks.md) and
removes a cost that grows with the number of held polls:

* `LeanPollingApp` + `lean_poll`: `--lean` answers `GET /poll_for_updates` in raw ASGI, beside
  FastAPI instead of through it. It waits through the very same `wait_for_events` as the
  FastAPI handler (passed in, never copied) and speaks the same API; what it saves is what the
  framework costs per held request.
* `OneWrite` / `OneWritePerResponse`: each response leaves in one socket write, not two.
* `tune_garbage_collector`: the cyclic collector stops re-walking every held poll.
* `GracefulServer`: a stop answers every held poll with 204 instead of cutting it off.
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import parse_qsl

import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from servers.contract import STREAM_HEADER, ApiError, PollParams, parse_poll_params
from servers.identity import ServedByApp, served_by_header
from servers.stats import Stats

ASGICallable = Callable[[Scope, Receive, Send], Awaitable[None]]
#: The asyncio server's wait: (params, receive, claimed stream) -> encoded events or None.
WaitForEvents = Callable[[PollParams, Receive, "str | None"], Awaitable["bytes | None"]]


class LeanPollingApp(ServedByApp):
    """FastAPI, except that `GET /poll_for_updates` goes to `lean_poll` in raw ASGI."""

    lean_poll: ASGICallable | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self.lean_poll is not None and scope["type"] == "http"
                and scope["path"] == "/poll_for_updates" and scope["method"] == "GET"):
            await self.lean_poll(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def lean_poll(wait_for_events: WaitForEvents, stats: Stats, hold: float,
              stream: str) -> ASGICallable:
    """The long poll in raw ASGI: no middleware, routing, Request or Response objects.

    Speaks the API exactly like the FastAPI handler (status codes, JSON errors, headers), and
    waits through the same `wait_for_events`.
    """
    stream_header = (STREAM_HEADER.lower().encode(), stream.encode())

    async def poll(scope: Scope, receive: Receive, send: Send) -> None:
        stats.count_request("poll_for_updates")
        try:
            query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            claimed = next((v.decode("latin-1") for k, v in scope["headers"]
                            if k == stream_header[0]), None)
            body = await wait_for_events(parse_poll_params(dict(query), hold), receive, claimed)
        except ApiError as exc:
            error = json.dumps(exc.body(), ensure_ascii=False, separators=(",", ":")).encode()
            extra = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
            if exc.close_connection:
                extra.append((b"connection", b"close"))
            await send_raw(send, exc.status, [stream_header, *extra], error)
            return
        if body is None:
            stats.count_empty()
            await send_raw(send, 204, [stream_header], None)
        else:
            await send_raw(send, 200, [stream_header], body)

    return poll


async def send_raw(send: Send, status: int, headers: list[tuple[bytes, bytes]],
                   body: bytes | None) -> None:
    """One response in two ASGI messages; a body is JSON, and 204 has none (no Content-Type)."""
    headers = [*headers, served_by_header()]
    if body is not None:
        headers = [*headers, (b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body or b""})


def tune_garbage_collector() -> None:
    """Keep Python's cyclic garbage collector from walking every held poll, over and over.

    Each held poll keeps a few dozen objects alive (its task, coroutines, futures, request).
    With the default thresholds, the collector runs after every 700 new objects and regularly
    walks all the survivors, so taking 10,000 polls, or answering them, cost more in collections
    than in the work itself (`make bench` measured it). Start-up objects are frozen out of the
    collections, and young objects are collected after 50,000 allocations instead.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


class OneWrite:
    """A transport that joins the two writes of one response (headers, then body) into one.

    uvicorn writes a response's headers and its body separately, and on loopback each write is
    a system call and a TCP segment. When 10,000 held polls are answered at once, that doubling
    is a good part of the work. A response's head waits for the body until the end of this
    turn of the event loop, and the body sends both together. Everything else passes through.
    """

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._held is None and not data.startswith(b"HTTP/"):
            # Not the head of a response: an SSE chunk or a WebSocket frame, alone on its
            # connection. Holding it would only delay it by a turn of the loop (measured
            # 2-3 ms per event, docs/streams.md), with nothing to join it to.
            self._transport.write(data)
            return
        if self._held is None:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            joined, self._held = self._held + data, None
            self._transport.write(joined)

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))  # never around what is held, or bytes would reorder

    def flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWritePerResponse(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's own HTTP protocol, writing each response in one piece (see `OneWrite`)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        one_write = OneWrite(cast(asyncio.Transport, transport), asyncio.get_running_loop())
        super().connection_made(one_write)


class GracefulServer(uvicorn.Server):
    """uvicorn, but a stop first answers every held poll with 204 instead of cutting it off."""

    def __init__(self, config: uvicorn.Config, release_waiters: Callable[[], None]) -> None:
        super().__init__(config)
        self.release_waiters = release_waiters

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.release_waiters()
        await super().shutdown(sockets)
