"""Counting what crosses the wire: a loopback TCP relay between a client and a server.

Every byte a client sends and receives passes through here, whatever the protocol: HTTP
headers, chunked framing, SSE lines, the WebSocket handshake, frame headers and pings. So
"bytes per event" is counted at the socket, the same way for a long poll, an SSE stream and a
WebSocket, without touching either end. `cut()` drops every relayed connection at once, without
a goodbye, which is how notebook 07 shows each client resuming after a dropped connection.

    with WireCounter(server.url) as wire:
        client = SSEClient(wire.url).start()
        ...
        wire.counts()   # WireCounts(up=..., down=..., connections=...)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")


@dataclass(frozen=True)
class WireCounts:
    """Bytes client -> server (`up`), server -> client (`down`), and TCP connections opened."""

    up: int
    down: int
    connections: int


class _RelayLoop:
    """One event loop thread that every WireCounter in this process shares.

    A thread (and a GIL turn) per relay would add their own delays to the very latencies the
    lesson measures; one loop relays every connection at once instead.
    """

    _shared: _RelayLoop | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="wire-counter", daemon=True).start()

    @classmethod
    def get(cls) -> _RelayLoop:
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)


class WireCounter:
    """A relay on a free loopback port in front of `upstream`; its `url` replaces the server's."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream must look like http://127.0.0.1:8000, not {upstream!r}")
        self.upstream = (parts.hostname, parts.port)
        self.url = ""
        self._up = self._down = self._connections = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._relays: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._loop = _RelayLoop.get()

    def counts(self) -> WireCounts:
        return WireCounts(self._up, self._down, self._connections)

    def reset(self) -> None:
        """Start counting from zero (connections already open count as none)."""
        self._up = self._down = self._connections = 0

    def cut(self) -> int:
        """Drop every relayed connection now, both sides, with a reset; return how many."""
        return self._loop.run(self._cut())

    async def _cut(self) -> int:
        writers, self._writers = list(self._writers), set()
        for writer in writers:
            writer.transport.abort()
        return len(writers) // 2

    def start(self) -> WireCounter:
        self._server = self._loop.run(asyncio.start_server(self._relay, "127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._loop.run(self._close())
            self._server = None

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._cut()
        for task in list(self._relays):
            task.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)

    async def _relay(self, client_reader: asyncio.StreamReader,
                     client_writer: asyncio.StreamWriter) -> None:
        """One relayed connection, until either side closes or `stop()` cancels it.

        Cancelled, it ends as finished, not as cancelled: Python 3.11's `start_server` asks a
        handler task for its exception when it is done, and for a cancelled one that raises, so
        every stop printed a CancelledError traceback into the notebook (the browser test saw it).
        """
        with contextlib.suppress(asyncio.CancelledError):
            await self._relay_connection(client_reader, client_writer)

    async def _relay_connection(self, client_reader: asyncio.StreamReader,
                                client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.transport.abort()
            self._relays.discard(task)
            return
        self._connections += 1
        self._writers |= {client_writer, server_writer}
        try:
            await asyncio.gather(self._pipe(client_reader, server_writer, up=True),
                                 self._pipe(server_reader, client_writer, up=False))
        finally:
            self._relays.discard(task)
            for writer in (client_writer, server_writer):
                self._writers.discard(writer)
                writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    up: bool) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while chunk := await reader.read(65536):
                if up:
                    self._up += len(chunk)
                else:
                    self._down += len(chunk)
                writer.write(chunk)
                await writer.drain()
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()  # pass a half-close on, as TCP would

    def __enter__(self) -> WireCounter:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
