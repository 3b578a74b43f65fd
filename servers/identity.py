"""Which process answered: `pid` in /health and /stats, and `X-Served-By` on every response.

With several servers behind a gateway, a learner needs to see which one answered each request.
Every bundled server therefore adds `X-Served-By: <pid>` (`servers.contract.served_by`) to
every response it sends: through its framework (`ServedByApp` here, for the asyncio server; an
`after_request` hook for Flask), and below it (`servers.contract.raw_response`, the lean poll).
Run by uvicorn, the asyncio server lets uvicorn add it instead (`uvicorn_headers`), which costs
nothing per request; `ServedByApp` adds it where no uvicorn runs (in-process test clients).
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from servers.contract import SERVED_BY_HEADER, served_by

_header: tuple[bytes, bytes] = (b"", b"")


def served_by_header() -> tuple[bytes, bytes]:
    """`X-Served-By` as a raw ASGI header, encoded once per process (a fork encodes it again)."""
    global _header
    pid = served_by().encode()
    if _header[1] != pid:
        _header = (SERVED_BY_HEADER.lower().encode(), pid)
    return _header


def uvicorn_headers() -> list[tuple[str, str]]:
    """`X-Served-By` for uvicorn's `headers` option: on every response and WebSocket handshake
    uvicorn writes, without a `send` wrapper per request (docs/benchmarks.md says why)."""
    return [(SERVED_BY_HEADER, served_by())]


class ServedByApp(FastAPI):
    """FastAPI, with `X-Served-By` on every HTTP response and WebSocket handshake it sends.

    Done here, around the whole app, rather than as middleware, so that the answers of the
    exception handlers and of a refused WebSocket upgrade carry it too.
    """

    #: False when uvicorn adds the header itself (`uvicorn_headers`): then nothing is wrapped.
    served_by_here = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.served_by_here or scope["type"] not in ("http", "websocket"):
            await super().__call__(scope, receive, send)
            return

        async def send_with_pid(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept",
                                   "websocket.http.response.start"):
                message = {**message,
                           "headers": [*message.get("headers", []), served_by_header()]}
            await send(message)

        await super().__call__(scope, receive, send_with_pid)
