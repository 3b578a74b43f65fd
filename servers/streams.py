"""Streams: the asyncio server's event log over one long-lived connection, as SSE or a WebSocket.

A long poll asks again after every answer; a stream asks once and is told each event as it is
published. Both endpoints wait as the long poll does: read the log after their cursor, and when
nothing is new, await one future that every stream shares (`PublishWait`: a
`servers.waiters.Waiters`) that the same publish resolves: one publish reaches polls and
streams alike, and a stream has no queue of events, only its cursor in the log.

The keep-alive is one tick for all streams, not a timeout each: the tick resolves the shared
future, and a stream that wakes to nothing new sends its comment. (Per-stream timeouts unhook
from that future's callbacks, O(N) each: 10,000 SSE streams took 84 s to open, not 8 s.)

A slow reader blocks only its own send; one blocked for `SEND_STALL_S` ends that stream
(`servers.stream_io`; docs/streams.md has the choices and the measurements).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse
from starlette.types import Message

from servers.contract import (
    MAX_LIMIT,
    STREAM_HEADER,
    ApiError,
    Event,
    check_token,
    parse_message,
    parse_poll_params,
)
from servers.logs import SharedLog
from servers.stats import Stats
from servers.stream_io import (
    SEND_STALL_S,  # noqa: F401  (a stream's contract; tests read it)
    EventStream,
    bounded,
    log_unless_peer_gone,
)

KEEPALIVE_S = 10.0  # a comment on a quiet SSE stream; API.md asks for one at least every 15 s
RETRY_MS = 1000  # how long an EventSource waits before it reconnects

#: What a stream is sent next: new events, the 410 of a too-old cursor, or [] (a keep-alive).
Batch = list[Event] | ApiError


class PublishWait(Protocol):
    """`fastapi_server.Waiters`: one future for the next wake-up, resolved for everyone at once."""

    def next_publish(self) -> asyncio.Future[None]: ...
    def wake_all(self) -> None: ...


def compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass
class Streams:
    """The two stream endpoints of one server, sharing its log, counters and wait."""

    log: SharedLog
    stats: Stats
    waiters: PublishWait
    token: str | None
    closing: Callable[[], bool]  # true once the server is stopping: every stream ends
    _encoded: dict[tuple[str, int, int], Any] = field(default_factory=dict)
    _following: int = 0  # streams inside follow() now; the keep-alive tick runs while any are
    _ticker: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        # Streams at the same cursor get the same events: encode them once per publish.
        self.log.on_wake(self._encoded.clear)

    def resume_point(self, last_event_id_header: str | None, query: Mapping[str, str]) -> int:
        """The cursor a stream starts after: `Last-Event-ID` if sent, else `?last_event_id=`.

        Raises the polls' 400 for a value that is not an integer >= 0.
        """
        if last_event_id_header is not None and last_event_id_header.strip():
            try:
                return parse_poll_params({"last_event_id": last_event_id_header}, 0).last_event_id
            except ApiError:
                raise ApiError(400, "bad_parameter", f"Last-Event-ID: {last_event_id_header!r} "
                               "is not valid: use an integer >= 0 (an id you received).") from None
        raw = query.get("last_event_id", "0")
        return parse_poll_params({"last_event_id": raw}, 0).last_event_id

    async def follow(self, after: int) -> AsyncIterator[Batch]:
        """What a stream sends, batch after batch, until the server stops: the long poll's wait."""
        self._following += 1
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.ensure_future(self._keep_alive_tick())
        idle_wake = False  # woken, and nothing new since: the keep-alive tick
        try:
            while not self.closing():
                woken = self.waiters.next_publish()  # before the read, as the long poll does
                try:
                    events = await self.log.since(after, MAX_LIMIT)
                except ApiError as error:
                    if error.status != 410:
                        events = []  # the broker is down: wait; its backfill wakes us
                    else:  # older than retention: say so, then carry on
                        yield error
                        after = error.extra["oldest_id"] - 1
                        continue
                if events:
                    after, idle_wake = events[-1]["id"], False
                    yield events
                    continue
                if idle_wake:
                    idle_wake = False
                    yield []
                # Shielded, because a stream that is cancelled (its client left) must not
                # cancel the future every other stream awaits.
                await asyncio.shield(woken)
                idle_wake = not self.closing()
        finally:
            self._following -= 1

    async def _keep_alive_tick(self) -> None:
        """Wake every stream each KEEPALIVE_S, while any is open: one timer for all of them."""
        while self._following:
            await asyncio.sleep(KEEPALIVE_S)
            self.waiters.wake_all()

    def encoded(self, style: str, after: int, events: list[Event]) -> Any:
        """`events` as SSE bytes or WebSocket frames, encoded once for every stream at `after`.

        Keyed by the batch's last id too: with an awaited read (a broker), two streams at one
        cursor may hold batches read before and after a publish, and must not share frames.
        """
        key = (style, after, events[-1]["id"])
        if key not in self._encoded:
            if style == "sse":
                self._encoded[key] = "".join(
                    f"id: {e['id']}\ndata: {compact(e)}\n\n" for e in events).encode()
            else:
                self._encoded[key] = [compact({"type": "event", "event": e}) for e in events]
        return self._encoded[key]

    # --- Server-Sent Events ------------------------------------------------------------------

    async def sse_messages(self, after: int) -> AsyncIterator[bytes]:
        """The body of `GET /sse`: `retry:`, then an `id:`/`data:` message per event, forever."""
        yield f"retry: {RETRY_MS}\n\n".encode()
        async for batch in self.follow(after):
            if isinstance(batch, ApiError):
                yield f"event: gone\ndata: {compact(batch.body())}\n\n".encode()
                after = batch.extra["oldest_id"] - 1
            elif batch:
                yield self.encoded("sse", after, batch)
                after = batch[-1]["id"]
            else:
                yield b": keep-alive\n\n"  # a quiet stream, not a dead one

    # --- WebSocket -----------------------------------------------------------------------------

    async def ws_session(self, websocket: WebSocket, after: int) -> None:
        """`WS /ws` once accepted: a task sends the events while this reads the client's frames."""
        sender = asyncio.ensure_future(self.ws_send_events(websocket, after))
        sender.add_done_callback(log_unless_peer_gone)
        try:
            await self.ws_read_frames(websocket, websocket.headers.get("Authorization"), sender)
        finally:
            sender.cancel()
        if self.closing():
            await bounded(websocket.close(1012, "server restarting"))

    async def ws_send_events(self, websocket: WebSocket, after: int) -> None:
        """A hello frame, then a frame per event; ends if a send stays blocked (a stuck reader)."""
        with contextlib.suppress(ApiError):  # a broker that is down: the newest id we saw
            await self.log.refresh()
        hello = {"type": "hello", "stream": self.log.stream, "last_event_id": self.log.last_id}
        if not await bounded(websocket.send_text(compact(hello))):
            return
        async for batch in self.follow(after):
            if isinstance(batch, ApiError):
                frames = [compact({"type": "gone", **batch.body()})]
                after = batch.extra["oldest_id"] - 1
            else:
                frames = self.encoded("ws", after, batch) if batch else []
                after = batch[-1]["id"] if batch else after
            for frame in frames:
                if not await bounded(websocket.send_text(frame)):
                    return

    async def ws_read_frames(self, websocket: WebSocket, authorization: str | None,
                             sender: asyncio.Future[None]) -> None:
        """Answer each client frame, until the client leaves or `sender` ends (a stuck reader,
        or the server stopping). A bad frame gets an error frame and the connection stays."""
        while not sender.done():
            received = asyncio.ensure_future(websocket.receive())
            await asyncio.wait((received, sender), return_when=asyncio.FIRST_COMPLETED)
            if not received.done():
                received.cancel()
                return
            message = received.result()
            if message["type"] == "websocket.disconnect":
                return
            reply = await self.answer(message, authorization)
            if not await bounded(websocket.send_text(compact(reply))):
                return

    async def answer(self, message: Message, authorization: str | None) -> dict[str, Any]:
        """The server's reply to one client frame: `published`, or an `error` saying why not."""
        text = message.get("text")
        if text is None:
            return error_frame("bad_frame", 'Send JSON text frames such as {"type": "publish", '
                               '"message": "hi"}; binary frames are not understood.')
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):
            return error_frame("malformed_json", "The frame is not valid JSON; send "
                               '{"type": "publish", "message": "hi"}.')
        if not isinstance(frame, dict) or frame.get("type") != "publish":
            return error_frame("bad_frame", 'The only frame a client sends is {"type": "publish",'
                               ' "message": "..."}; every frame is a JSON object with a "type".')
        try:
            check_token(self.token, authorization)  # the token rules of POST /trigger_event
            published = await self.log.publish(parse_message(text.encode(), {}))
        except ApiError as exc:
            return error_frame(exc.code, exc.detail)
        return {"type": "published", "event": published}


def error_frame(code: str, detail: str) -> dict[str, Any]:
    return {"type": "error", "error": code, "detail": detail}


def add_stream_routes(app: FastAPI, streams: Streams) -> None:
    """Register `GET /sse` and `WS /ws` on `app` (docs/api.md, "Streams")."""

    @app.get("/sse")
    async def sse(request: Request) -> EventStream:
        """Server-Sent Events: one response that never ends, a message per event."""
        after = streams.resume_point(request.headers.get("Last-Event-ID"), request.query_params)
        return EventStream(streams.stats, streams.sse_messages(after), streams.log.stream)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        """WebSocket: a hello, a frame per event, and the client may publish back."""
        try:
            after = streams.resume_point(None, websocket.query_params)
        except ApiError as exc:  # the polls' JSON 400 instead of the upgrade, not a stream
            await websocket.send_denial_response(JSONResponse(
                exc.body(), exc.status, headers={STREAM_HEADER: streams.log.stream}))
            return
        await websocket.accept(headers=[(STREAM_HEADER.lower().encode(),
                                         streams.log.stream.encode())])
        streams.stats.stream_opened()
        try:
            await streams.ws_session(websocket, after)
        finally:
            streams.stats.stream_closed()
