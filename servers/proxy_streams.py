"""Streams through the proxy: a streamed body relayed as it arrives (or buffered), and WebSockets.

A Server-Sent Events response never ends, so a proxy that reads the whole upstream body before
answering never answers. This module relays such a body chunk by chunk, the way nginx does with
`proxy_buffering off`, or, to show what a buffering proxy does to SSE, collects it into a
BUFFER_BYTES buffer that is sent only when full or when the upstream response ends:

    --buffering off     every chunk is sent on as it arrives (the default)
    --buffering on      nginx's `proxy_buffering on`: buffered, unless the upstream answers
                        `X-Accel-Buffering: no` (the kit's server does, on /sse)
    --buffering force   buffered whatever the upstream says (a proxy or CDN that ignores it)

A WebSocket upgrade is relayed frame by frame both ways; when either side closes, the other is
closed with the same code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from aiohttp import web

Buffering = Literal["off", "on", "force"]
BUFFERING_MODES: tuple[Buffering, ...] = ("off", "on", "force")
#: nginx's proxy_buffer_size default is one memory page: 4 KiB on x86-64 Linux.
BUFFER_BYTES = 4096
CLOSE_TIMEOUT_S = 2.0  # to finish a WebSocket closing handshake with either side

#: Answers the gateway's own frame to a client frame (a refused publish), or None to forward it.
FrameGuard = Callable[[str], "dict[str, Any] | None"]


@dataclass
class StreamStats:
    """The stream counters of `/_proxy/stats`."""

    streamed_open: int = 0  # streamed responses (SSE) being relayed now
    streamed_total: int = 0
    streamed_timeouts: int = 0  # ended because the upstream sent nothing for read_timeout
    websockets_open: int = 0
    websockets_total: int = 0
    frames_to_upstream: int = 0
    frames_to_client: int = 0
    frames_refused: int = 0  # client frames the gateway answered itself (a publish, no token)

    def snapshot(self) -> dict[str, int]:
        return dict(vars(self))


def buffers(mode: Buffering, upstream_headers: Any) -> bool:
    """Whether a streamed response is buffered, in `mode`, given the upstream's headers."""
    if mode == "off":
        return False
    if mode == "force":
        return True
    return str(upstream_headers.get("X-Accel-Buffering", "")).strip().lower() != "no"


def is_streamed(upstream: aiohttp.ClientResponse) -> bool:
    """A response without a Content-Length (chunked or until close) may never end: relay it
    as it arrives. Every other answer (a long poll's too) is complete when it starts."""
    return upstream.status != 204 and "Content-Length" not in upstream.headers


async def relay_body(request: web.BaseRequest, upstream: aiohttp.ClientResponse,
                     response: web.StreamResponse, buffered: bool,
                     stats: StreamStats) -> web.StreamResponse:
    """Send the upstream's body on as it arrives, or BUFFER_BYTES at a time when `buffered`.

    The upstream's read timeout applies between chunks, as nginx's proxy_read_timeout does: an
    SSE stream that sends keep-alive comments lives on; one silent for longer is ended.
    """
    stats.streamed_open += 1
    stats.streamed_total += 1
    pending = bytearray()
    try:
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                pending += chunk
                if not buffered or len(pending) >= BUFFER_BYTES:
                    await response.write(bytes(pending))
                    pending.clear()
        except asyncio.TimeoutError:
            stats.streamed_timeouts += 1
        except aiohttp.ClientError:
            pass  # the upstream went away mid-stream: end the stream, the client reconnects
        if pending:
            await response.write(bytes(pending))
        await response.write_eof()
    finally:
        stats.streamed_open -= 1
    return response


class WebSocketRelay:
    """One client WebSocket and its upstream WebSocket, relaying frames until either closes."""

    def __init__(self, client: web.WebSocketResponse,
                 upstream: aiohttp.ClientWebSocketResponse[bool], stats: StreamStats,
                 guard: FrameGuard) -> None:
        self.client, self.upstream = client, upstream
        self.stats, self.guard = stats, guard

    async def run(self) -> None:
        """Relay both ways; when one direction ends, close both sides."""
        self.stats.websockets_open += 1
        self.stats.websockets_total += 1
        directions = [asyncio.ensure_future(self.to_upstream()),
                      asyncio.ensure_future(self.to_client())]
        try:
            await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in directions:
                task.cancel()
            await asyncio.gather(*directions, return_exceptions=True)
            await self.close()
            self.stats.websockets_open -= 1

    async def to_upstream(self) -> None:
        async for message in self.client:
            if message.type == aiohttp.WSMsgType.TEXT:
                refusal = self.guard(message.data)
                if refusal is not None:
                    self.stats.frames_refused += 1
                    await self.client.send_json(refusal)
                    continue
                await self.upstream.send_str(message.data)
            elif message.type == aiohttp.WSMsgType.BINARY:
                await self.upstream.send_bytes(message.data)
            else:
                continue
            self.stats.frames_to_upstream += 1

    async def to_client(self) -> None:
        async for message in self.upstream:
            if message.type == aiohttp.WSMsgType.TEXT:
                await self.client.send_str(message.data)
            elif message.type == aiohttp.WSMsgType.BINARY:
                await self.client.send_bytes(message.data)
            else:
                continue
            self.stats.frames_to_client += 1

    async def close(self) -> None:
        """Close each side with the code the other closed with (1001 if it just went away)."""
        code = self.upstream.close_code or self.client.close_code or 1001
        await _bounded(self.client.close(code=_sendable(code)))
        await _bounded(self.upstream.close(code=_sendable(code)))


def _sendable(code: int) -> int:
    """A close code one may send: 1005/1006 only describe a close, they are never sent."""
    return 1001 if code in (1005, 1006) else code


async def _bounded(closing: Awaitable[Any]) -> None:
    try:
        await asyncio.wait_for(closing, CLOSE_TIMEOUT_S)
    except (asyncio.TimeoutError, aiohttp.ClientError, ConnectionError):
        pass
