"""fast_path.OneWrite joins a response's head to its body, and leaves stream writes alone.

Holding an SSE chunk or a WebSocket frame for a turn of the event loop delayed every stream
event by 2-3 ms (docs/streams.md); nothing follows it to be joined with.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from servers.fast_path import OneWrite


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return False


def test_a_response_head_waits_for_its_body_but_stream_writes_go_at_once() -> None:
    async def scenario() -> list[bytes]:
        raw = Transport()
        one = OneWrite(cast(Any, raw), asyncio.get_running_loop())
        one.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        assert raw.writes == []  # the head is held
        one.write(b"[]")
        assert raw.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n[]"]  # one write
        one.write(b"1a\r\nid: 1\ndata: {}\n\n\r\n")  # an SSE chunk: nothing to wait for
        one.write(b"\x81\x02{}")  # a WebSocket frame
        assert len(raw.writes) == 3
        one.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # a head alone goes at the loop's turn
        await asyncio.sleep(0)
        return raw.writes

    writes = asyncio.run(scenario())
    assert writes[-1] == b"HTTP/1.1 204 No Content\r\n\r\n" and len(writes) == 4
