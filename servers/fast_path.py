"""TUNING, not the lesson: what the asyncio server does only to go faster under `make bench`.

Read `servers.fastapi_server` to learn asyncio long polling; nothing here changes what it
answers, and nothing but `--lean` changes how it waits. Each piece below was measured by
`make bench` (docs/benchmarks.md) and removes a cost that grows with the number of held polls:

* `LeanPollingApp` + `lean_poll`: `--lean` answers `GET /poll_for_updates` in raw ASGI, beside
  FastAPI instead of through it, and speaks the same API. With a log in this process, a poll
  that finds nothing new is parked (`servers.parking`) and its answer is written by the publish
  itself, Nchan's way; every other poll waits through the very same `wait_for_events` as the
  FastAPI handler (passed in, never copied). What it saves is what the framework costs per held
  request, and a task's wake-up per answer.
* `OneWrite` / `OneWritePerResponse`: each response leaves in one socket write, not two.
* `tune_garbage_collector`: the cyclic collector stops re-walking every held poll.
* `GracefulServer`: a stop answers every held poll with 204 instead of cutting it off.
"""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, cast
from urllib.parse import parse_qsl

import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from servers.answers import STREAM_KEY, Answer, EncodedEvents
from servers.contract import ApiError, PollParams, parse_poll_params
from servers.identity import ServedByApp, served_by_header
from servers.parking import ParkingLot
from servers.stats import Stats

ASGICallable = Callable[[Scope, Receive, Send], Awaitable[None]]
#: The asyncio server's wait: (params, scope, receive, claimed stream) -> the answer or None.
WaitForEvents = Callable[[PollParams, Scope, Receive, "str | None"], Awaitable["Answer | None"]]


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
              answers: EncodedEvents, app: ServedByApp,
              lot: ParkingLot | None = None) -> ASGICallable:
    """The long poll in raw ASGI: no middleware, routing, Request or Response objects.

    Speaks the API exactly like the FastAPI handler (status codes, JSON errors, headers). With
    a `lot` (a log in this process), a poll that finds nothing new is parked there and answered
    by the next publish (`servers.parking`); every other poll goes through the same
    `wait_for_events` as the FastAPI handler, sending the same encoded `Answer`.
    """

    async def poll(scope: Scope, receive: Receive, send: Send) -> None:
        stats.count_request("poll_for_updates")
        try:
            params, stream = poll_params(scope, hold), claimed(scope)
            parked = None if lot is None else await lot.hold(params, scope, stream)
            if parked:
                return  # answered by a publish
            if parked is False:  # let go unanswered (its hold is over): read once more, now
                params = replace(params, timeout=0)
            answer = await wait_for_events(params, scope, receive, stream)
        except ApiError as exc:
            error = answers.encode(exc.json_bytes())
            extra = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
            if exc.close_connection:
                extra.append((b"connection", b"close"))
            await send_raw(send, exc.status, [*error.headers, *extra], error.body, app)
            return
        if answer is None:
            stats.count_empty()
            await send_raw(send, 204, [answers.stream_header()], b"", app)
        else:
            await send_raw(send, 200, answer.headers, answer.body, app)

    return poll


def poll_params(scope: Scope, hold: float) -> PollParams:
    """The poll's parameters, from its query string (parsed here, so that the parsed query is
    not kept alive in the poll while it is held)."""
    query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    return parse_poll_params(dict(query), hold)


def claimed(scope: Scope) -> str | None:
    """The `X-Stream-Id` a poll sent, if any."""
    return next((v.decode("latin-1") for k, v in scope["headers"] if k == STREAM_KEY), None)


async def send_raw(send: Send, status: int, headers: list[tuple[bytes, bytes]],
                   body: bytes, app: ServedByApp) -> None:
    """One response in two ASGI messages, with `X-Served-By` unless uvicorn adds it."""
    if app.served_by_here:
        headers = [*headers, served_by_header()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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
    turn of the event loop, and the body sends both together (a head whose body is not written
    in the same turn leaves alone at its end). Everything else passes through.
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
            holding = _holding.get(self._loop)
            if holding is None:  # the first head held in this turn: flush them all at its end
                _holding[self._loop] = holding = []
                self._loop.call_soon(_flush_held, self._loop)
            holding.append(self)
        else:
            joined, self._held = self._held + data, None
            self._transport.write(joined)

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))  # never around what is held, or bytes would reorder

    def write_whole(self, data: bytes) -> None:
        """A whole response, written now (`servers.parking.send_whole`)."""
        self.flush()
        self._transport.write(data)

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


#: The `OneWrite`s holding a head in this turn of each event loop. One callback per turn flushes
#: them all: a callback per response cost 10,000 of them in a fan-out to 10,000.
_holding: dict[asyncio.AbstractEventLoop, list[OneWrite]] = {}


def _flush_held(loop: asyncio.AbstractEventLoop) -> None:
    for one_write in _holding.pop(loop, ()):
        one_write.flush()


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
