"""What the stream tests share: the asyncio app under a real uvicorn in a thread, a raw SSE
reader, and a TestClient. Not a conftest, so that its names are imported where they are used.

`serve()` runs the very app `python -m servers.fastapi_server` runs, under uvicorn with the same
WebSocket backend, in this process: a test can then shorten `servers.streams`' keep-alive or
stall limit with monkeypatch, and still talk to it over real sockets.
"""

from __future__ import annotations

import http.client
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import uvicorn

from helpers.sse import ServerSentEvent, SSEParser
from servers import fast_path, fastapi_server
from servers.startup import ServerConfig, bind_socket

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r".*install `httpx2` instead")
    from starlette.testclient import TestClient, WebSocketDenialResponse  # noqa: F401


class Served:
    def __init__(self, url: str, app: Any) -> None:
        self.url = url
        self.app = app
        self.log = app.state.log
        self.ws_url = "ws" + url.removeprefix("http")

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.app.state.stats.snapshot()
        return stats

    def publish(self, message: str = "hi") -> dict[str, Any]:
        return dict(self.log.publish(message))


@contextmanager
def serve(**config: Any) -> Iterator[Served]:
    """The asyncio server's app under uvicorn, in a thread, on a free loopback port."""
    app = fastapi_server.create_app(ServerConfig(**config))
    sock = bind_socket("127.0.0.1", 0)
    uv_config = uvicorn.Config(app, ws="websockets-sansio", ws_max_size=64 * 1024,
                               log_level="warning", timeout_graceful_shutdown=1,
                               http=fast_path.OneWritePerResponse)
    server = fast_path.GracefulServer(uv_config, app.state.release_waiters)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    host, port = sock.getsockname()[:2]
    try:
        yield Served(f"http://{host}:{port}", app)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


class RawSSE:
    """`GET /sse` on a plain http.client connection: its status, headers and raw body bytes."""

    def __init__(self, url: str, query: str = "", headers: dict[str, str] | None = None,
                 timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        self.conn.request("GET", "/sse" + query, headers=headers or {})
        self.response = self.conn.getresponse()
        self.parser = SSEParser()
        self.raw = bytearray()
        self.events: list[ServerSentEvent] = []

    def read_until(self, count: int, timeout: float = 5.0) -> list[ServerSentEvent]:
        """Read until `count` messages in all have been dispatched; return them all."""
        deadline = time.monotonic() + timeout
        while len(self.events) < count:
            assert time.monotonic() < deadline, f"only {len(self.events)} of {count} messages"
            chunk = self.response.read1(65536)
            assert chunk, "the stream ended"
            self.raw += chunk
            self.events += self.parser.feed(chunk)
        return self.events

    def close(self) -> None:
        self.conn.close()
