"""helpers/loadclient.py: the load client notebook 05 and `make bench` share.

Its hand-written HTTP/1.1 against a scripted server, and the kit's cursor protocol.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from helpers.loadclient import ApiCursor, Reply, connect, request_bytes

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


async def serve(answers: list[list[bytes]],
                then: Callable[[int], Awaitable[T]]) -> T:
    """A scripted HTTP server on loopback: for the k-th request, write answers[k] piece by
    piece (a short pause between pieces). Runs `then(port)` and returns its result."""
    handled: list[asyncio.Future[None]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        done = asyncio.get_running_loop().create_future()
        handled.append(done)
        try:
            for pieces in answers:
                await reader.readuntil(b"\r\n\r\n")
                for piece in pieces:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.01)
        finally:
            writer.close()
            await writer.wait_closed()
            done.set_result(None)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        return await then(server.sockets[0].getsockname()[1])
    finally:
        await asyncio.wait_for(asyncio.gather(*handled), 5)
        server.close()
        await server.wait_closed()


# --- the load client's HTTP ---------------------------------------------------------------------


def test_responses_are_read_whole_whatever_the_framing() -> None:
    answers = [
        [b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Stream-Id: s1\r\n\r\nhello", b" world"],
        [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
         b"6\r\n world\r\n0\r\n\r\n"],
        [b"HTTP/1.1 204 No Content\r\nX-Stream-Id: s1\r\n\r\n"],
        [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nConnection: close\r\n\r\nok"],
    ]

    async def client(port: int) -> tuple[list[Reply], bool]:
        connection = await connect("127.0.0.1", port, "127.0.0.2")
        replies = []
        try:
            for _ in answers:
                replies.append(await asyncio.wait_for(
                    connection.send(request_bytes("GET", "/x")), 5))
            return replies, connection.usable
        finally:
            connection.close()

    replies, usable = run(serve(answers, client))
    assert [(r.status, r.body) for r in replies] == [
        (200, b"hello world"), (200, b"hello world"), (204, b""), (200, b"ok")]
    assert replies[0].headers["x-stream-id"] == "s1"
    assert replies[0].done_at <= replies[1].done_at
    assert not usable, "a `Connection: close` answer must retire the connection"


def test_request_bytes_are_minimal_http_1_1() -> None:
    raw = request_bytes("POST", "/pub", body=b"hi", headers={"Accept": "application/json"})
    assert raw == (b"POST /pub HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n"
                   b"Content-Length: 2\r\n\r\nhi")
    assert request_bytes("GET", "/stats").endswith(b"\r\n\r\n")


# --- the kit's cursor protocol -------------------------------------------------------------------


def test_api_cursor_asks_after_its_last_event_and_moves_with_each_answer() -> None:
    cursor = ApiCursor(7)
    assert cursor.poll(30).startswith(b"GET /poll_for_updates?last_event_id=7&timeout=30 ")
    events = [{"id": 8, "timestamp": 1.0, "message": "a"}, {"id": 9, "timestamp": 2.0,
                                                            "message": "b"}]
    assert cursor.advance(Reply(b"HTTP/1.1 200 OK", json.dumps(events).encode(), 0.0)) == 2
    assert cursor.last_event_id == 9
    assert cursor.advance(Reply(b"HTTP/1.1 204 No Content", b"", 0.0)) == 0
    assert cursor.last_event_id == 9
