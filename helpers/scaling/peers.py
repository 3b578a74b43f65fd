"""The servers a benchmark drives, behind one small interface.

A `Peer` is a running server plus what a scenario needs from it: a cursor at the newest event,
a publish, the number of long polls it holds right now, and its processes (for memory and
threads, read from /proc). `KitPeer` is one of the kit's servers started with
`helpers.launch()`, which notebook 05 and `make bench` both drive; `bench.nchan.NchanPeer`, the
production reference, is the benchmark's own.

Control requests (publish, counters) go over their own keep-alive connection in the load
client's event loop, with the same hand-written HTTP as the load.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

from helpers.launcher import Server, launch
from helpers.loadclient import (
    ApiCursor,
    Connection,
    Cursor,
    Reply,
    connect,
    request_bytes,
)


class Peer(Protocol):
    """A server under test. `label` names it in tables, `host`/`port` is where it listens."""

    label: str
    host: str
    port: int

    def cursor(self) -> Cursor:
        """A subscriber's cursor at the newest event: its next long poll waits for a new one."""
        ...

    async def publish(self, message: str) -> Reply:
        """Publish one event and return the publisher's reply."""
        ...

    async def waiting(self) -> int:
        """Long polls the server holds right now, by its own count."""
        ...

    def short_poll(self) -> bytes:
        """A request the server answers at once with one event (a short-poll hit)."""
        ...

    def pids(self) -> list[int]:
        """The server's processes, for memory and thread counts."""
        ...

    async def stop(self) -> None: ...


class ControlChannel:
    """One keep-alive connection for the benchmark's own requests, reopened if it closes."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._connection: Connection | None = None
        self._lock = asyncio.Lock()

    def send_now(self, raw: bytes) -> asyncio.Future[Reply]:
        """Write `raw` at once on an open, idle connection (a publish timed to the microsecond)."""
        assert self._connection is not None and not self._connection.busy
        return self._connection.send(raw)

    async def ready(self) -> None:
        """Make sure the connection is open and idle, so `send_now` can write immediately."""
        if self._connection is None or not self._connection.usable:
            self._connection = await connect(self.host, self.port)

    async def request(self, raw: bytes, timeout: float = 10.0) -> Reply:
        async with self._lock:
            await self.ready()
            assert self._connection is not None
            return await asyncio.wait_for(self._connection.send(raw), timeout)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class KitPeer:
    """One of the kit's servers (`helpers.launch(kind, **options)`) as a benchmark peer."""

    protocol = "api"

    def __init__(self, label: str, kind: str, **options: Any) -> None:
        self.label = label
        self.kind = kind
        self.options = options
        self.server: Server | None = None
        self.host, self.port = "127.0.0.1", 0
        self._control: ControlChannel | None = None
        self._last_id = 0
        self._owned = True  # started by us, so stopped by us

    @classmethod
    async def attach(cls, server: Server, label: str = "") -> KitPeer:
        """A peer for a server that is already running (the caller stops it)."""
        peer = cls(label or server.kind, server.kind, **server.options)
        peer.server = server
        peer.port = int(server.url.rsplit(":", 1)[1])
        peer._control = ControlChannel(peer.host, peer.port)
        peer._last_id = (await peer.stats())["last_event_id"]
        peer._owned = False
        return peer

    async def start(self) -> KitPeer:
        # launch() blocks for a second or two while the server imports; nothing else runs yet.
        self.server = launch(self.kind, **self.options)
        try:
            self.port = int(self.server.url.rsplit(":", 1)[1])
            self._control = ControlChannel(self.host, self.port)
            self._last_id = (await self.stats())["last_event_id"]
        except BaseException:
            await self.stop()
            raise
        return self

    @property
    def control(self) -> ControlChannel:
        assert self._control is not None, "start() the peer first"
        return self._control

    async def stats(self) -> dict[str, Any]:
        reply = await self.control.request(request_bytes("GET", "/stats"))
        stats: dict[str, Any] = json.loads(reply.body)
        return stats

    @property
    def last_id(self) -> int:
        """The newest event id this peer knows of (new cursors start after it)."""
        return self._last_id

    def cursor(self) -> ApiCursor:
        return ApiCursor(self._last_id)

    def publish_request(self, message: str) -> bytes:
        body = json.dumps({"message": message}).encode()
        return request_bytes("POST", "/trigger_event", body=body,
                             headers={"Content-Type": "application/json"})

    def published(self, reply: Reply) -> None:
        """Note the event a publish created, so that new cursors start after it."""
        if reply.status == 201:
            self._last_id = json.loads(reply.body)["event"]["id"]

    async def publish(self, message: str) -> Reply:
        reply = await self.control.request(self.publish_request(message))
        self.published(reply)
        return reply

    async def waiting(self) -> int:
        return int((await self.stats())["waiting"])

    def short_poll(self) -> bytes:
        return request_bytes("GET", f"/events?last_event_id={max(0, self._last_id - 1)}")

    def pids(self) -> list[int]:
        return [self.server.pid] if self.server is not None and self.server.running else []

    async def stop(self) -> None:
        if self._control is not None:
            self._control.close()
        if self.server is not None and self._owned:
            self.server.stop()
