"""Asyncio long polling, on FastAPI and uvicorn.

`/poll_for_updates` holds the request without holding a thread: every waiting request awaits one
shared future, and publishing an event resolves it, so one trigger wakes every waiter at once.
There is no sleep loop, and no `await` between "nothing new yet" and "start waiting", so an event
published in that gap cannot be missed (the article's version awaits a lock there).

What this server does only for speed (`--lean`, the one-write transport, GC tuning, the graceful
stop) lives in `servers.fast_path`, so that this file shows the wait and little else.

With `--broker redis://HOST:PORT/DB`, the log lives in Redis and several servers share it
(`servers.broker`); the wait is the same, woken by the broker's notifications as well.

    python -m servers.fastapi_server --port 0 [--hold 30] [--lean] [--broker redis://...]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope

from servers import fast_path, idempotency, streams
from servers.answers import Answer, AnswerResponse, EncodedEvents
from servers.contract import (
    STREAM_HEADER,
    ApiError,
    PollParams,
    check_token,
    framework_error,
    health,
    other_stream,
    parse_message,
    parse_poll_params,
    triggered,
)
from servers.hangup import client_gone
from servers.identity import ServedByApp, uvicorn_headers
from servers.limits import AtLimit, Budget, plan_budget
from servers.logs import open_shared_log
from servers.parking import ParkingLot
from servers.startup import (
    ServerConfig,
    announce,
    bind_socket,
    die_with_parent,
    generate,
    parse_config,
)
from servers.stats import Stats
from servers.uvicorn_guard import ConnectionGate, GuardedProtocol, GuardedServer
from servers.waiters import Waiters

NAME = "fastapi_server"

#: Something a poll awaits after finding nothing new and before it starts waiting. This server
#: passes none; `servers.racy_server` passes one to reopen the check-then-wait race on purpose.
BeforeWait = Callable[[], Awaitable[None]]


def create_app(config: ServerConfig | None = None, *, name: str = NAME,
               before_wait: BeforeWait | None = None, lean: bool = False,
               budget: Budget | None = None, at_limit: AtLimit | None = None) -> FastAPI:
    """Build the FastAPI app; `app.state` holds its log, counters and config.

    `name` is what /health and /stats report. `lean=True` answers `GET /poll_for_updates`
    without the framework (`servers.fast_path.lean_poll`), its held polls parked until a publish
    writes their answers (`servers.parking`); every other request goes through FastAPI. `main`
    passes the open-file `budget` it planned, which may hold fewer polls than
    `config.max_waiting`, and the `at_limit` line to write when full.
    Leave `before_wait` unset: it exists only so that `servers.racy_server` can be this server
    with the race reopened.
    """
    config = config or ServerConfig()
    log, local = open_shared_log(config)  # memory, SQLite or a Redis broker: servers.logs
    max_waiting = budget.max_waiting if budget is not None else config.max_waiting
    stats = Stats(name, log, max_waiting, budget=budget, at_limit=at_limit)
    waiters = Waiters()
    # The streams' own Waiters: woken by every publish too, and also by their keep-alive tick,
    # which must not wake the held polls (servers.streams says why the tick is shared).
    stream_wakeups = Waiters()
    closing = False  # set on shutdown: every held poll answers 204 at once

    def release_waiters() -> None:
        """Answer every held poll with 204 now, so a stop drops no request mid-flight."""
        nonlocal closing
        closing = True
        waiters.wake_all()
        stream_wakeups.wake_all()
        if lot is not None:
            lot.release()
    log.on_wake(waiters.wake_all)
    log.on_wake(stream_wakeups.wake_all)
    # Many woken waiters share a cursor; encode their answer once per publish, not once each.
    answers = EncodedEvents(log)
    log.on_wake(answers.forget)
    # `--lean`, with a log in this process: a held poll is parked, and the publish itself
    # writes its answer (servers.parking); the FastAPI handler always waits as shown here.
    lot = ParkingLot(local, answers, stats, waiters) if lean and local is not None else None
    if lot is not None:
        log.on_wake(lot.publish)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await log.start()  # a broker: reach Redis and subscribe before the first request
        every = config.generate_every
        generator = asyncio.create_task(generate(every, log.publish)) if every else None
        yield
        if generator is not None:
            generator.cancel()
        await log.close()

    app_class = fast_path.LeanPollingApp if lean else ServedByApp
    app = app_class(title="Polling Lab: asyncio long polling", lifespan=lifespan)
    # `log` is what tests publish to directly: the local EventLog, or the broker's log.
    app.state.log, app.state.shared_log = local or log, log
    app.state.stats, app.state.config = stats, config
    app.state.release_waiters = release_waiters

    def no_content() -> AnswerResponse:
        return AnswerResponse(None, 204, stream=answers.stream_header())

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {STREAM_HEADER: log.stream, **exc.headers}
        if exc.close_connection:
            headers["Connection"] = "close"
        return JSONResponse(exc.body(), exc.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return await api_error(request, framework_error(
            exc.status_code, request.method, request.url.path, str(exc.detail)))

    @app.get("/health")
    async def health_view() -> dict[str, Any]:
        """Readiness: the launcher polls this until the server answers."""
        return health(name, log.stream)

    @app.post("/trigger_event", status_code=201)
    async def trigger_event(request: Request, response: Response) -> dict[str, Any]:
        """Publish one event (once per Idempotency-Key); the publish wakes every held poll."""
        stats.count_request("trigger_event")
        check_token(config.token, request.headers.get("Authorization"))
        message = parse_message(await request.body(), request.query_params)
        event, replayed = await log.publish_once(request.headers.get(idempotency.HEADER),
                                                 message)
        if replayed:
            stats.count_replay()
            response.headers[idempotency.REPLAYED_HEADER] = "true"
        return triggered(event)

    @app.get("/events")
    async def events(request: Request) -> Response:
        """Short poll: answer at once, with an empty list when nothing is new."""
        stats.count_request("events")
        params = parse_poll_params(request.query_params, config.hold)
        answer = await answers.after(params.last_event_id, params.limit)
        if answer is None:
            stats.count_empty()
            return AnswerResponse(answers.encode(b"[]"))
        return AnswerResponse(answer)

    async def wait_for_events(params: PollParams, scope: Scope, receive: Receive,
                              claimed_stream: str | None) -> Answer | None:
        """The asyncio long poll: the encoded events after the cursor, or None when none came.

        Awaits a publish, the hold or a disconnect, without a thread. Both the FastAPI handler
        and the lean path call this, so they wait in exactly the same way.
        """
        if other_stream(log.stream, claimed_stream):
            return None  # its cursor is from before a restart: a 204 now lets it reset
        held_on = log.stream
        woken = waiters.next_publish()  # taken before the read: a publish during it wakes us
        answer = await answers.after(params.last_event_id, params.limit)
        if answer is not None or params.timeout <= 0:
            return answer
        loop = asyncio.get_running_loop()
        deadline = loop.time() + params.timeout
        stats.wait_started()
        gone = client_gone(scope, receive)  # done when the client hangs up
        try:
            while answer is None and not closing and (left := deadline - loop.time()) > 0:
                if before_wait is not None:  # racy_server only: the race, on purpose
                    await before_wait()
                    woken = waiters.next_publish()  # taken *after* an await: a publish is lost
                # `woken` predates the last read: a publish since (even mid-read) has resolved it
                await waiters.wait(left, woken, gone)
                if gone.done():
                    break  # nobody is listening: release the waiter now
                woken = waiters.next_publish()
                answer = await read_again(params)
                if log.stream != held_on:  # a broker whose Redis lost the log: a 204 now
                    return None  # carries the new X-Stream-Id, and the client resets
        finally:
            stats.wait_ended()
            gone.cancel()
        return answer

    async def read_again(params: PollParams) -> Answer | None:
        """A held poll's read after a wake-up; a broker that is down keeps it waiting."""
        try:
            return await answers.after(params.last_event_id, params.limit)
        except ApiError as exc:
            if exc.status != 503:
                raise
            return None  # the listener's backfill wakes us once Redis is back

    @app.get("/poll_for_updates")
    async def poll_for_updates(request: Request) -> Response:
        """Asyncio long poll: await a publish (or the hold, or a disconnect) without a thread."""
        stats.count_request("poll_for_updates")
        params = parse_poll_params(request.query_params, config.hold)
        answer = await wait_for_events(params, request.scope, request.receive,
                                       request.headers.get(STREAM_HEADER))
        if answer is None:
            stats.count_empty()
            return no_content()
        return AnswerResponse(answer)

    if isinstance(app, fast_path.LeanPollingApp):
        app.lean_poll = fast_path.lean_poll(wait_for_events, stats, config.hold, answers, app,
                                            lot)

    # The same log and wait, over one long-lived connection: GET /sse and WS /ws.
    streams.add_stream_routes(app, streams.Streams(log, stats, stream_wakeups, config.token,
                                                   closing=lambda: closing))

    @app.get("/stats")
    async def stats_view() -> dict[str, Any]:
        """The counters a notebook plots: requests, empty answers, waiting polls, connections."""
        try:
            await log.refresh()  # a broker's counts, from Redis
        except ApiError:
            pass  # Redis is down: the last counts seen, and "subscribed": false, say so
        return {**stats.snapshot(), **log.describe(), **(lot.describe() if lot else {})}

    return app


def main(argv: list[str] | None = None, *, name: str = NAME,
         before_wait: BeforeWait | None = None) -> None:
    die_with_parent()
    own = argparse.ArgumentParser(prog=f"python -m servers.{name}", add_help=False)
    own.add_argument("--lean", action="store_true",
                     help="answer GET /poll_for_updates in raw ASGI, beside FastAPI")
    own.add_argument("--ws", default="websockets-sansio", choices=["websockets-sansio", "wsproto"],
                     help="uvicorn's WebSocket backend for WS /ws (docs/streams.md compares them)")
    args, rest = own.parse_known_args(argv)
    if {"-h", "--help"} & set(rest):
        print(own.format_help().split("\n\n", 1)[-1].strip() + "\n")  # then the shared flags
    config = parse_config(name, rest)
    budget = plan_budget(config.max_waiting)  # one descriptor per connection: its socket
    sock = bind_socket(config.host, config.port)
    announce(name, sock, config)
    print(budget.describe(name), flush=True)
    at_limit = AtLimit(name)
    app = create_app(config, name=name, before_wait=before_wait, lean=args.lean,
                     budget=budget, at_limit=at_limit)
    if isinstance(app, ServedByApp):
        app.served_by_here = False  # uvicorn adds X-Served-By to each response (`headers` below)
    gate = ConnectionGate(budget.connections, app.state.stats, at_limit, config.request_timeout)
    server_config = uvicorn.Config(
        app,
        # one per connection; writes each answer once; with --lean, offers the publish's write
        http=GuardedProtocol.for_gate(gate, parking=args.lean),
        ws=args.ws,  # websockets-sansio unless told: docs/streams.md says why
        ws_max_size=64 * 1024,  # a publish frame is small: a 4096-character message fits
        headers=uvicorn_headers(),
        proxy_headers=False,  # no proxy's X-Forwarded-* to trust: a middleware less per request
        log_level="info",
        access_log=False,  # an access line per request would cost more than the request
        timeout_graceful_shutdown=1,  # don't let a stuck request delay a stop for long
        ssl_certfile=config.tls[0] if config.tls else None,  # --tls: https (servers.tls)
        ssl_keyfile=config.tls[1] if config.tls else None,
    )
    fast_path.tune_garbage_collector()
    GuardedServer(server_config, app.state.release_waiters, gate).run(sockets=[sock])


if __name__ == "__main__":
    main()
