"""The swarm's polls over raw asyncio: the bench's HTTP/1.1 connection, the kit's cursor rules.

aiohttp costs a simulated client far more per answer than the bench's load client, and during
a fan-out that cost lands between an answer's arrival and the moment it is timed. A `RawGet`
sends the swarm's plain `GET`s (long and short polls, over `http://`) on one
`helpers.loadclient.Connection`, whose arrival time is taken in `data_received`, the moment an
answer's last byte is read. What the client does next (parse, record, poll again) is not in it.
SSE, WebSockets and `https://` still go through aiohttp (`helpers.swarm_streams`).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

from requests.structures import CaseInsensitiveDict

from helpers.clients import CONNECT_TIMEOUT_S
from helpers.errors import ServerUnavailable
from helpers.loadclient import Connection, HttpError, connect, request_bytes

T = TypeVar("T")


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    """`awaitable`'s result, or TimeoutError after `seconds`.

    asyncio.timeout where there is one: before Python 3.12, wait_for can swallow the cancel
    that stops or kills a client whose answer lands at that moment, and the client lives on.
    """
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)  # pragma: no cover (3.10)


def raw_capable(url: str) -> bool:
    """True for the URLs a RawGet can serve: plain http on an IPv4 address or a name."""
    parts = urlsplit(url)
    return parts.scheme == "http" and ":" not in (parts.hostname or ":")


class RawGet:
    """One simulated client's keep-alive connection to `url`, reopened whenever it drops."""

    def __init__(self, url: str, read_timeout: float) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.netloc = parts.netloc
        self.prefix = parts.path.rstrip("/")
        self.read_timeout = read_timeout
        self.connection: Connection | None = None

    async def get(self, path: str, params: dict[str, Any],
                  headers: dict[str, str]) -> tuple[int, CaseInsensitiveDict[str], bytes, float]:
        """GET `path?params`: (status, headers, body, time.time() when its last byte arrived).

        A refused or dropped connection, or no answer within `read_timeout`, raises
        ServerUnavailable, as aiohttp's errors do in the swarm.
        """
        raw = request_bytes("GET", f"{self.prefix}{path}?{urlencode(params)}", host=self.netloc,
                            headers=headers)
        try:
            if self.connection is None or not self.connection.usable:
                self.connection = await within(CONNECT_TIMEOUT_S, connect(self.host, self.port))
            reply = await within(self.read_timeout, self.connection.send(raw))
        except (HttpError, OSError, asyncio.TimeoutError) as exc:
            self.close()
            raise ServerUnavailable(f"{type(exc).__name__}: {exc}") from exc
        received = time.time() - (time.perf_counter() - reply.done_at)
        return reply.status, CaseInsensitiveDict(reply.headers), reply.body, received

    def close(self) -> None:
        """Close the connection without a goodbye (a request in flight is cancelled)."""
        if self.connection is not None:
            self.connection.close()
            self.connection = None
