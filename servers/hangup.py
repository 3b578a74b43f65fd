"""How a held poll hears that its client hung up: from the server's connection, or from ASGI.

A held poll must notice a client that leaves, or it would be counted as waiting (and kept in
memory) until its hold ends. ASGI says so with an `http.disconnect` message, which only a
pending `receive()` gets: a task per held poll, just to wait for that message. The kit's own
uvicorn protocol (`servers.uvicorn_guard.GuardedProtocol`) offers the same news without a task:
its `connection_lost` resolves a future the poll hands it, through the ASGI extension
`polling.lab.hangup` in the request's scope. `client_gone` uses the extension when the server
offers it, and ASGI's way otherwise (an in-process test client, another ASGI server).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.types import Receive, Scope

#: The ASGI extension's name: its value is a callable that takes the future to resolve when
#: the connection of this request is lost (and None to forget it).
EXTENSION = "polling.lab.hangup"
Watch = Callable[["asyncio.Future[Any] | None"], None]


def client_gone(scope: Scope, receive: Receive) -> asyncio.Future[Any]:
    """A future that is done once the client has closed its connection; cancel it when done.

    It needs nothing from the caller until then: no task, when the server offers `EXTENSION`.
    """
    watch = watch_of(scope)
    if watch is None:
        return asyncio.ensure_future(_disconnect_message(receive))
    gone: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    watch(gone)
    return gone


def watch_of(scope: Scope) -> Watch | None:
    """The request's `watch`, where the server offers `EXTENSION`."""
    watch: Watch | None = scope.get("extensions", {}).get(EXTENSION, {}).get("watch")
    return watch


async def _disconnect_message(receive: Receive) -> None:
    """Return when the client closes its connection (ASGI sends `http.disconnect`)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class HangupWatch:
    """The server's side of `EXTENSION`, one per connection: `watch` keeps the future of the
    request being answered, and `hung_up` resolves it when the connection is lost.
    `extensions` is what goes into each request's scope."""

    __slots__ = ("_gone", "extensions")

    def __init__(self) -> None:
        self._gone: asyncio.Future[Any] | None = None
        self.extensions: dict[str, dict[str, Any]] = {EXTENSION: {"watch": self.watch}}

    def watch(self, gone: asyncio.Future[Any] | None) -> None:
        self._gone = gone

    def hung_up(self) -> None:
        gone, self._gone = self._gone, None
        if gone is not None and not gone.done():
            gone.set_result(None)
