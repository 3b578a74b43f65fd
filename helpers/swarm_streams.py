"""The Swarm's stream clients: one simulated SSE or WebSocket connection on the swarm's loop.

They follow the threaded clients' rules (`helpers.streams`) through the same `Cursor`: resume
from the cursor after any drop (`Last-Event-ID` for SSE, `?last_event_id=` for a WebSocket),
start over on a new stream id, record a `gone` as a gap, stop on a 4xx, retry the rest.
"""

from __future__ import annotations

import functools
import json
import time
from typing import Any, Literal

import aiohttp
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus, WebSocketException

from helpers.clients import CONNECT_TIMEOUT_S, Cursor
from helpers.errors import ServerUnavailable
from helpers.sse import SSEParser
from servers.contract import STREAM_HEADER, Event

StreamStrategy = Literal["sse", "ws"]


def _json(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return {}


async def follow_stream(strategy: StreamStrategy, session: aiohttp.ClientSession, url: str,
                        cursor: Cursor, compression: str | None = None) -> int:
    """Hold one stream until it ends; return how many events it delivered.

    Raises ServerUnavailable when it could not connect or was cut, PollError on a 4xx.
    """
    try:
        if strategy == "sse":
            return await _follow_sse(session, url, cursor)
        return await _follow_ws(url, cursor, compression)
    except (aiohttp.ClientError, TimeoutError, OSError, WebSocketException, ValueError) as exc:
        raise ServerUnavailable(f"{type(exc).__name__}: {exc}") from exc


async def _follow_sse(session: aiohttp.ClientSession, url: str, cursor: Cursor) -> int:
    headers = {"Last-Event-ID": str(cursor.last_event_id), **cursor.request_headers()}
    async with session.get(url + "/sse", headers=headers) as response:
        if response.status != 200:
            body = await response.read()
            cursor.apply(response.status, response.headers, lambda: _json(body), time.time())
            raise ServerUnavailable(f"HTTP {response.status} instead of a stream")
        if cursor.observe_stream(response.headers.get(STREAM_HEADER)):
            return 0  # the server restarted afresh: reconnect at once, from 0
        parser, delivered = SSEParser(), 0
        async for chunk in response.content.iter_any():
            received, events = time.time(), []
            for message in parser.feed(chunk):
                if message.event == "gone":
                    cursor.apply(410, {}, functools.partial(_json, message.data), received)
                elif message.event == "message":
                    events.append(json.loads(message.data))
            delivered += len(_apply(cursor, events, received))
        return delivered


async def _follow_ws(url: str, cursor: Cursor, compression: str | None) -> int:
    uri = "ws" + url.removeprefix("http") + f"/ws?last_event_id={cursor.last_event_id}"
    try:
        ws = await connect(uri, compression=compression, proxy=None, ping_interval=None,
                           open_timeout=CONNECT_TIMEOUT_S,
                           additional_headers=cursor.request_headers())
    except InvalidStatus as exc:
        response = exc.response
        cursor.apply(response.status_code, response.headers,
                     lambda: _json(bytes(response.body or b"")), time.time())
        raise ServerUnavailable(f"HTTP {response.status_code} instead of a WebSocket") from exc
    delivered = 0
    async with ws:
        if cursor.observe_stream(_json(await ws.recv()).get("stream")):
            return 0
        async for frame in ws:
            message, received = _json(frame), time.time()
            if message.get("type") == "event":
                delivered += len(_apply(cursor, [message["event"]], received))
            elif message.get("type") == "gone":
                cursor.apply(410, {}, functools.partial(dict, message), received)
    return delivered


def _apply(cursor: Cursor, events: list[Event], received: float) -> list[Event]:
    return cursor.apply(200, {}, lambda: events, received) if events else []
