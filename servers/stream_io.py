"""Sending on a stream without being held up by its reader: bounded sends, the SSE response.

`servers.streams` sends each event through these. A slow reader blocks only its own send; one
blocked for `SEND_STALL_S` ends that stream, which frees its task and its count in /stats
(docs/streams.md has the choices and the measurements).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Awaitable

import anyio
from fastapi import WebSocketDisconnect
from fastapi.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from servers.contract import STREAM_HEADER
from servers.stats import Stats

SEND_STALL_S = 5.0  # a send still blocked after this long ends the stream: the reader is stuck

#: What a send raises once the peer has gone (uvicorn, Starlette, and the TestClient's anyio).
PEER_GONE = (OSError, RuntimeError, WebSocketDisconnect, anyio.ClosedResourceError,
             anyio.BrokenResourceError)


def log_unless_peer_gone(task: asyncio.Future[None]) -> None:
    """Log a sender that failed for another reason than its client leaving: that is a bug."""
    if not task.cancelled() and (exc := task.exception()) and not isinstance(exc, PEER_GONE):
        logging.getLogger("uvicorn.error").error("WebSocket sender failed", exc_info=exc)


async def within_stall(send: Awaitable[None]) -> None:
    """Await one send; raise TimeoutError if it is still blocked after SEND_STALL_S."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(SEND_STALL_S):
            await send
    else:  # 3.10's wait_for can swallow a cancel that lands as the send ends, and leak a task
        await asyncio.wait_for(send, SEND_STALL_S)


async def bounded(send: Awaitable[None]) -> bool:
    """Await one send for at most SEND_STALL_S; False when it stayed blocked (or the peer left)."""
    try:
        await within_stall(send)
    except (TimeoutError, *PEER_GONE):  # stuck, or gone
        return False
    return True


class EventStream(StreamingResponse):
    """`text/event-stream` that counts itself in `/stats` and ends a send stuck for SEND_STALL_S."""

    def __init__(self, stats: Stats, messages: AsyncIterator[bytes], stream: str) -> None:
        super().__init__(messages, media_type="text/event-stream", headers={
            "Cache-Control": "no-cache", "X-Accel-Buffering": "no", STREAM_HEADER: stream})
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.stats.stream_opened()
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.stats.stream_closed()

    async def stream_response(self, send: Send) -> None:
        async def stall_bounded(message: Message) -> None:
            await within_stall(send(message))
        try:
            await super().stream_response(stall_bounded)
        except TimeoutError:
            pass  # the reader is stuck; ending here frees its task and its count
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]
