"""A load client with as little overhead as Python allows: raw asyncio, hand-written HTTP/1.1.

Every simulated subscriber is one TCP connection (`Connection`, an `asyncio.Protocol`) that sends
one request at a time and reads the status line, the headers and a `Content-Length` (or chunked)
body. A response's arrival time is taken with `time.perf_counter()` in `data_received`, the
moment its last byte is read, before any other code runs, so what the client does with it later
does not count.

Connections are spread over several loopback source addresses (127.0.0.2, 127.0.0.3, ...), so
that 10,000 of them to one server port never run out of ephemeral ports.

A `Cursor` is how a subscriber asks for what comes after what it has. `ApiCursor` speaks the
kit's API (docs/api.md): `GET /poll_for_updates?last_event_id=N`, and the JSON list in a 200
moves the cursor to the newest id in it. (`make bench` adds Nchan's, in `bench.nchan`.)

Notebook 05, `make bench` and the swarm's polls (`helpers.swarm_raw`) all use this client.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, cast

#: Linux's IP_BIND_ADDRESS_NO_PORT: bind a source address now, pick the port at connect time.
IP_BIND_ADDRESS_NO_PORT = 24
CONNECTIONS_PER_SOURCE = 2_500


class HttpError(Exception):
    """A connection failed or closed before its response was complete."""


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[ \t]*chunked", re.IGNORECASE)
_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.IGNORECASE)


class Reply:
    """One complete response. `done_at` is `time.perf_counter()` when its last byte arrived.

    The status is read at once; the headers are parsed only if someone asks for them.
    """

    __slots__ = ("head", "status", "body", "done_at")

    def __init__(self, head: bytes, body: bytes, done_at: float) -> None:
        self.head = head  # status line and headers, without the blank line
        self.status = int(head[9:12])
        self.body = body
        self.done_at = done_at

    @property
    def headers(self) -> dict[str, str]:
        """The headers, with lower-case names."""
        found = {}
        for line in self.head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            found[name.strip().lower()] = value.strip()
        return found

    def __repr__(self) -> str:
        return f"<Reply {self.status}, {len(self.body)} bytes>"


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that carries one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._buffer = b""
        self._pending: asyncio.Future[Reply] | None = None
        self._body_start = -1  # where the body of the response being read starts, once known
        self._length = -1  # its Content-Length; -2: chunked
        self._closing = False  # the server said it closes this connection after the response
        #: Called with each complete Reply, in data_received, before its future resolves. A
        #: `Tally` shared by many connections costs far less than a callback on each future.
        self.listener: Callable[[Reply], None] | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have the same methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        # A response usually arrives in one piece: then this is the only copy made.
        self._buffer = self._buffer + data if self._buffer else data
        if self._pending is not None:
            self._parse()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._pending is not None and not self._pending.done():
            self._pending.set_exception(HttpError(f"connection closed mid-response ({exc})"))
        if not self.closed.done():
            self.closed.set_result(None)

    # --- requests ------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._pending is not None and not self._pending.done()

    @property
    def usable(self) -> bool:
        """Open, and not about to be closed by the server (`Connection: close`, HTTP/1.0)."""
        return (self.transport is not None and not self._closing
                and not self.transport.is_closing())

    def send(self, raw: bytes) -> asyncio.Future[Reply]:
        """Write one complete request (see `request_bytes`); the future resolves to its Reply."""
        if self.transport is None:
            raise HttpError("the connection is closed")
        if self.busy:
            raise HttpError("this connection already has a request in flight")
        self._pending = asyncio.get_running_loop().create_future()
        self._body_start, self._length = -1, -1
        self.transport.write(raw)
        if self._buffer:
            self._parse()
        return self._pending

    def close(self) -> None:
        """Close the connection; a request still in flight is cancelled."""
        if self._pending is not None and not self._pending.done():
            self._pending.cancel()
        if self.transport is not None:
            self.transport.close()

    def _parse(self) -> None:
        buffer = self._buffer
        if self._body_start < 0:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self._body_start = end + 4
            head = buffer[:end]
            self._closing = head.startswith(b"HTTP/1.0") or bool(_CLOSE.search(head))
            if found := _CONTENT_LENGTH.search(head):
                self._length = int(found.group(1))
            elif _CHUNKED.search(head):
                self._length = -2
            else:  # 204 and 304 have no body
                self._length = 0
        start = self._body_start
        if self._length >= 0:
            end = start + self._length
            if len(buffer) < end:
                return
            body = buffer[start:end]
        else:
            parsed = _dechunk(buffer, start)
            if parsed is None:
                return
            body, end = parsed
        reply = Reply(buffer[: start - 4], body, time.perf_counter())
        self._buffer = buffer[end:]
        pending, self._pending = self._pending, None
        assert pending is not None
        if self.listener is not None:
            self.listener(reply)
        if not pending.done():
            pending.set_result(reply)
        if self._closing and self.transport is not None:
            self.transport.close()  # the server closes it anyway; free the socket now


def _dechunk(buffer: bytes, start: int) -> tuple[bytes, int] | None:
    """A complete chunked body from `start`, and where it ends; None while incomplete."""
    body = bytearray()
    at = start
    while True:
        eol = buffer.find(b"\r\n", at)
        if eol < 0:
            return None
        size = int(buffer[at:eol].split(b";")[0], 16)
        if size == 0:
            end = buffer.find(b"\r\n", eol + 2)  # no trailers expected: the final CRLF
            return (bytes(body), end + 2) if end >= 0 else None
        if len(buffer) < eol + 2 + size + 2:
            return None
        body += buffer[eol + 2 : eol + 2 + size]
        at = eol + 2 + size + 2


def request_bytes(method: str, path: str, *, host: str = "127.0.0.1",
                  headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    """A minimal HTTP/1.1 request, encoded once so a thousand clients can send it as is."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def source_addresses(n: int, per_source: int = CONNECTIONS_PER_SOURCE) -> Iterator[str]:
    """127.0.0.2, 127.0.0.3, ...: one source address per `per_source` connections."""
    for i in range(n):
        yield f"127.0.0.{2 + i // per_source}"


async def connect(host: str, port: int, source: str | None = None) -> Connection:
    """Open one connection to host:port from the loopback address `source`."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if source is not None:
            try:
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            except OSError:  # not Linux: the port is picked at bind time instead
                pass
            sock.bind((source, 0))
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        _, connection = await loop.create_connection(Connection, sock=sock)
    except BaseException:
        sock.close()
        raise
    return connection


async def open_pool(host: str, port: int, n: int, *, concurrency: int = 200,
                    progress: ProgressFn | None = None) -> list[Connection]:
    """Open `n` connections, `concurrency` at a time, spread over loopback source addresses.

    Raises HttpError if any connection fails (the others are closed first).
    """
    semaphore = asyncio.Semaphore(concurrency)
    opened: list[Connection] = []

    async def one(source: str) -> None:
        async with semaphore:
            opened.append(await connect(host, port, source))
            if progress is not None and len(opened) % 500 == 0:
                progress(len(opened), n)

    results = await asyncio.gather(*(one(s) for s in source_addresses(n)),
                                   return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        close_all(opened)
        raise HttpError(f"{len(failures)} of {n} connections failed, first: {failures[0]!r}")
    return opened


class Tally:
    """Counts replies on many connections; `all_in` resolves once `expected` have arrived."""

    def __init__(self, connections: Iterable[Connection], expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.all_in: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for connection in connections:
            connection.listener = self

    def __call__(self, reply: Reply) -> None:
        self.count += 1
        if self.count >= self.expected and not self.all_in.done():
            self.all_in.set_result(None)


async def reopen(host: str, port: int, connections: list[Connection]) -> int:
    """Replace, in place, the connections the server has closed; return how many were."""
    closed = [i for i, c in enumerate(connections) if not c.usable]
    fresh = await open_pool(host, port, len(closed)) if closed else []
    for i, connection in zip(closed, fresh, strict=True):
        connections[i] = connection
    return len(closed)


def close_all(connections: Iterable[Connection]) -> None:
    for connection in connections:
        connection.close()


class ProgressFn(Protocol):
    def __call__(self, done: int, total: int) -> None: ...


# --- the cursor protocol, and the kit's ---------------------------------------------------------


class Cursor(Protocol):
    """Where a subscriber is in the stream, and how to ask for what comes after it."""

    def poll(self, hold: float) -> bytes:
        """The long-poll request for what comes after this cursor (held up to `hold` s)."""
        ...

    def advance(self, reply: Reply) -> int:
        """Move past what `reply` delivered; return how many events it delivered."""
        ...


@dataclass
class ApiCursor:
    """The kit's cursor: the last event id, sent as `?last_event_id=N`."""

    last_event_id: int = 0

    def poll(self, hold: float) -> bytes:
        return request_bytes(
            "GET", f"/poll_for_updates?last_event_id={self.last_event_id}&timeout={hold:g}")

    def advance(self, reply: Reply) -> int:
        if reply.status != 200:
            return 0
        events = json.loads(reply.body)
        if events:
            self.last_event_id = events[-1]["id"]
        return len(events)
