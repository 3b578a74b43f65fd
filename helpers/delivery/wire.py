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
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit


@dataclass(frozen=True)
class WireCounts:
    """Bytes client -> server (`up`), server -> client (`down`), and TCP connections opened."""

    up: int
    down: int
    connections: int


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
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="wire-counter", daemon=True)

    def counts(self) -> WireCounts:
        return WireCounts(self._up, self._down, self._connections)

    def reset(self) -> None:
        """Start counting from zero (connections already open count as none)."""
        self._up = self._down = self._connections = 0

    def cut(self) -> int:
        """Drop every relayed connection now, both sides, with a reset; return how many."""
        future = asyncio.run_coroutine_threadsafe(self._cut(), self._loop)
        return future.result(5)

    async def _cut(self) -> int:
        writers, self._writers = list(self._writers), set()
        for writer in writers:
            writer.transport.abort()
        return len(writers) // 2

    def start(self) -> WireCounter:
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("the wire counter did not start")
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._relay, "127.0.0.1", 0))
        port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            for writer in self._writers:
                writer.transport.abort()
            relays = asyncio.all_tasks(self._loop)
            for task in relays:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*relays, return_exceptions=True))
            self._loop.close()

    async def _relay(self, client_reader: asyncio.StreamReader,
                     client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.transport.abort()
            return
        self._connections += 1
        self._writers |= {client_writer, server_writer}
        try:
            await asyncio.gather(self._pipe(client_reader, server_writer, up=True),
                                 self._pipe(server_reader, client_writer, up=False))
        finally:
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
