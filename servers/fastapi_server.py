"""Asyncio long polling, on FastAPI and uvicorn.

`/poll_for_updates` holds the request without holding a thread: every waiting request awaits one
shared future, and publishing an event resolves it, so one trigger wakes every waiter at once.
There is no sleep loop, and no `await` between "nothing new yet" and "start waiting", so an event
published in that gap cannot be missed (the article's version awaits a lock there).

`--lean` answers `GET /poll_for_updates` in raw ASGI, beside the framework instead of through
it: the same wait and the same API, without FastAPI's middleware, routing and Response objects.
What that saves, measured by `make bench`, is what the framework costs per held request.

    python -m servers.fastapi_server --port 0 [--hold 30] [--lean]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast
from urllib.parse import parse_qsl

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from servers.eventlog import (
    ALLOWED_METHODS,
    STREAM_HEADER,
    ApiError,
    EventLog,
    PollParams,
    ServerConfig,
    Stats,
    announce,
    bind_socket,
    check_token,
    die_with_parent,
    method_not_allowed,
    not_found,
    other_stream,
    parse_config,
    parse_message,
    parse_poll_params,
)
from servers.store import open_log

NAME = "fastapi_server"

#: Something a poll awaits after finding nothing new and before it starts waiting. This server
#: passes none; `servers.racy_server` passes one to reopen the check-then-wait race on purpose.
BeforeWait = Callable[[], Awaitable[None]]


class Waiters:
    """One future that every held poll awaits; a publish resolves it and the next poll makes anew.

    Waking N waiters is one `set_result`; each waiter then reads only the events after its own
    cursor. Must be used from the event loop's thread only.
    """

    def __init__(self) -> None:
        self._next: asyncio.Future[None] | None = None

    def next_publish(self) -> asyncio.Future[None]:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        return self._next

    def wake_all(self) -> None:
        woken, self._next = self._next, None
        if woken is not None and not woken.done():
            woken.set_result(None)


async def _client_gone(receive: Receive) -> None:
    """Return when the client closes its connection (ASGI sends `http.disconnect`)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class PollingApp(FastAPI):
    """FastAPI, plus an optional lean path that answers `GET /poll_for_updates` in raw ASGI."""

    lean_poll: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self.lean_poll is not None and scope["type"] == "http"
                and scope["path"] == "/poll_for_updates" and scope["method"] == "GET"):
            await self.lean_poll(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(config: ServerConfig | None = None, *, name: str = NAME,
               before_wait: BeforeWait | None = None, lean: bool = False) -> FastAPI:
    """Build the FastAPI app; `app.state` holds its log, counters and config.

    `name` is what /health and /stats report. `lean=True` answers `GET /poll_for_updates`
    without the framework (see `lean_poll` below); every other request goes through FastAPI.
    Leave `before_wait` unset: it exists only so that `servers.racy_server` can be this server
    with the race reopened.
    """
    config = config or ServerConfig()
    log = open_log(config.store, config.retention)
    stats = Stats(name, log)
    waiters = Waiters()
    closing = False  # set on shutdown: every held poll answers 204 at once

    def release_waiters() -> None:
        """Answer every held poll with 204 now, so a stop drops no request mid-flight."""
        nonlocal closing
        closing = True
        waiters.wake_all()
    log.subscribe(lambda event: waiters.wake_all())
    # Many woken waiters share a cursor; encode their answer once per publish, not once each.
    encoded: dict[tuple[int, int], bytes] = {}
    log.subscribe(lambda event: encoded.clear())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        generator = asyncio.create_task(_generate(config, log)) if config.generate_every else None
        yield
        if generator is not None:
            generator.cancel()

    app = PollingApp(title="Polling Lab: asyncio long polling", lifespan=lifespan)
    app.state.log, app.state.stats, app.state.config = log, stats, config
    app.state.release_waiters = release_waiters

    def stream_response(body: bytes | None, status: int = 200) -> Response:
        headers = {STREAM_HEADER: log.stream}
        if body is None:
            return Response(status_code=status, headers=headers)
        return Response(body, status_code=status, headers=headers, media_type="application/json")

    def events_after(last_event_id: int, limit: int) -> bytes | None:
        key = (last_event_id, limit)
        body = encoded.get(key)
        if body is None:
            found = log.since(last_event_id, limit)
            if not found:
                return None
            body = encoded[key] = json.dumps(found, separators=(",", ":")).encode()
        return body

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            exc.body(), exc.status, headers={STREAM_HEADER: log.stream, **exc.headers}
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        path = request.url.path
        if exc.status_code == 405:
            error = method_not_allowed(request.method, path, ALLOWED_METHODS.get(path, "GET"))
        elif exc.status_code == 404:
            error = not_found(path)
        else:
            error = ApiError(exc.status_code, "bad_request", str(exc.detail))
        return await api_error(request, error)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Readiness: the launcher polls this until the server answers."""
        return {"status": "ok", "server": name, "stream": log.stream}

    @app.post("/trigger_event", status_code=201)
    async def trigger_event(request: Request) -> dict[str, Any]:
        """Publish one event; the publish itself wakes every held poll."""
        stats.count_request("trigger_event")
        check_token(config, request.headers.get("Authorization"))
        event = log.publish(parse_message(await request.body(), request.query_params))
        return {"status": "event triggered", "event": event}

    @app.get("/events")
    async def events(request: Request) -> Response:
        """Short poll: answer at once, with an empty list when nothing is new."""
        stats.count_request("events")
        params = parse_poll_params(request.query_params, config.hold)
        body = events_after(params.last_event_id, params.limit)
        if body is None:
            stats.count_empty()
            return stream_response(b"[]")
        return stream_response(body)

    async def wait_for_events(params: PollParams, receive: Receive,
                              claimed_stream: str | None) -> bytes | None:
        """The asyncio long poll: the encoded events after the cursor, or None when none came.

        Awaits a publish, the hold or a disconnect, without a thread. Both the FastAPI handler
        and the lean path call this, so they wait in exactly the same way.
        """
        if other_stream(log, claimed_stream):
            return None  # its cursor is from before a restart: a 204 now lets it reset
        body = events_after(params.last_event_id, params.limit)
        if body is not None or params.timeout <= 0:
            return body
        loop = asyncio.get_running_loop()
        deadline = loop.time() + params.timeout
        stats.wait_started(config.max_waiting)
        gone = asyncio.ensure_future(_client_gone(receive))
        try:
            while body is None and not closing and (left := deadline - loop.time()) > 0:
                if before_wait is not None:  # racy_server only: the race, on purpose
                    await before_wait()
                # No await between the check above and taking the future here, so a
                # publish cannot fall between them: the check-then-wait race is closed.
                woken = waiters.next_publish()
                await asyncio.wait((woken, gone), timeout=left, return_when="FIRST_COMPLETED")
                if gone.done():
                    break  # nobody is listening: release the waiter now
                body = events_after(params.last_event_id, params.limit)
        finally:
            stats.wait_ended()
            gone.cancel()
        return body

    @app.get("/poll_for_updates")
    async def poll_for_updates(request: Request) -> Response:
        """Asyncio long poll: await a publish (or the hold, or a disconnect) without a thread."""
        stats.count_request("poll_for_updates")
        params = parse_poll_params(request.query_params, config.hold)
        body = await wait_for_events(params, request.receive, request.headers.get(STREAM_HEADER))
        if body is None:
            stats.count_empty()
            return stream_response(None, 204)
        return stream_response(body)

    stream_header = (STREAM_HEADER.lower().encode(), log.stream.encode())

    async def lean_poll(scope: Scope, receive: Receive, send: Send) -> None:
        """The same long poll in raw ASGI: no middleware, routing, Request or Response objects.

        Speaks the API exactly like the handler above (status codes, JSON errors, headers).
        """
        stats.count_request("poll_for_updates")
        try:
            query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            claimed = next((v.decode("latin-1") for k, v in scope["headers"]
                            if k == stream_header[0]), None)
            body = await wait_for_events(parse_poll_params(dict(query), config.hold), receive,
                                         claimed)
        except ApiError as exc:
            error = json.dumps(exc.body(), ensure_ascii=False, separators=(",", ":")).encode()
            extra = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
            await _send_raw(send, exc.status, [stream_header, *extra], error)
            return
        if body is None:
            stats.count_empty()
            await _send_raw(send, 204, [stream_header], None)
        else:
            await _send_raw(send, 200, [stream_header], body)

    if lean:
        app.lean_poll = lean_poll

    @app.get("/stats")
    async def stats_view() -> dict[str, Any]:
        """The counters a notebook plots: requests, empty answers, waiting polls, threads."""
        return {**stats.snapshot(), "max_waiting": config.max_waiting}

    return app


async def _generate(config: ServerConfig, log: EventLog) -> None:
    """Publish an event every `generate_every` seconds, like the article's background task."""
    assert config.generate_every is not None
    n = 0
    while True:
        await asyncio.sleep(config.generate_every)
        n += 1
        log.publish(f"Generated event #{n}")


async def _send_raw(send: Send, status: int, headers: list[tuple[bytes, bytes]],
                    body: bytes | None) -> None:
    """One response in two ASGI messages; a body is JSON, and 204 has none (no Content-Type)."""
    if body is not None:
        headers = [*headers, (b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body or b""})


def main(argv: list[str] | None = None, *, name: str = NAME,
         before_wait: BeforeWait | None = None) -> None:
    die_with_parent()
    own = argparse.ArgumentParser(prog=f"python -m servers.{name}", add_help=False)
    own.add_argument("--lean", action="store_true",
                     help="answer GET /poll_for_updates in raw ASGI, beside FastAPI")
    args, rest = own.parse_known_args(argv)
    if {"-h", "--help"} & set(rest):
        print(own.format_help().split("\n\n", 1)[-1].strip() + "\n")  # then the shared flags
    config = parse_config(name, rest)
    sock = bind_socket(config.host, config.port)
    announce(name, sock, config)
    app = create_app(config, name=name, before_wait=before_wait, lean=args.lean)
    server_config = uvicorn.Config(
        app,
        http=_OneWritePerResponse,
        log_level="info",
        access_log=False,  # an access line per request would cost more than the request
        timeout_graceful_shutdown=1,  # don't let a stuck request delay a stop for long
    )
    _tune_garbage_collector()
    _GracefulServer(server_config, app.state.release_waiters).run(sockets=[sock])


def _tune_garbage_collector() -> None:
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


class _OneWrite:
    """A transport that joins the two writes of one response (headers, then body) into one.

    uvicorn writes a response's headers and its body separately, and on loopback each write is
    a system call and a TCP segment. When 10,000 held polls are answered at once, that doubling
    is a good part of the work. The first write waits for the second until the end of this
    turn of the event loop, and the second sends both together. Everything else passes through.
    """

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
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


class _OneWritePerResponse(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's own HTTP protocol, writing each response in one piece (see `_OneWrite`)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        one_write = _OneWrite(cast(asyncio.Transport, transport), asyncio.get_running_loop())
        super().connection_made(one_write)


class _GracefulServer(uvicorn.Server):
    """uvicorn, but a stop first answers every held poll with 204 instead of cutting it off."""

    def __init__(self, config: uvicorn.Config, release_waiters: Callable[[], None]) -> None:
        super().__init__(config)
        self.release_waiters = release_waiters

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.release_waiters()
        await super().shutdown(sockets)


if __name__ == "__main__":
    main()
