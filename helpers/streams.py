"""Stream clients: Server-Sent Events and WebSocket, with the interface of `LongPollClient`.

Each runs in a background thread and reports into a `Metrics` recorder exactly like the polling
clients, through the same `Cursor`: the same stream-reset rule (a new `stream` id means the
server restarted with a fresh log: start again from 0), the same 410 rule (`gone`: record the
gap, carry on from what is retained), and the same backoff with full jitter between attempts.
A dropped connection is resumed from the cursor, so nothing is lost or delivered twice.

- `SSEClient` reads `GET /sse` over a plain `http.client` connection and parses it with
  `helpers.sse` (the WHATWG rules); it resumes with the `Last-Event-ID` header, as a browser does.
- `WebSocketClient` uses the `websockets` library's threaded client on `WS /ws`, and resumes
  with `?last_event_id=`.

`metrics.requests` counts connection attempts: one request opens a stream that then carries
every event. `stop()` shuts the socket down, so it returns within a second even mid-read.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urlencode, urlsplit

from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.sync.client import connect

from helpers.clients import (
    CONNECT_TIMEOUT_S,
    READ_MARGIN_S,
    Cursor,
    backoff_delay,
    rate_limited_delay,
)
from helpers.errors import PollError, RateLimited, ServerUnavailable
from helpers.metrics import Metrics
from helpers.sse import SSEParser
from servers.contract import STREAM_HEADER, Event

#: API.md promises a keep-alive comment at least every 15 s on a quiet SSE stream, so a stream
#: silent for longer than this is dead (a cut cable, a frozen server), not quiet.
STREAM_READ_TIMEOUT_S = 15 + READ_MARGIN_S


class StreamClient:
    """What the SSE and WebSocket clients share; use one of those."""

    def __init__(self, url: str, *, metrics: Metrics | None = None, last_event_id: int = 0,
                 name: Hashable | None = None,
                 on_events: Callable[[Sequence[Event]], None] | None = None,
                 backoff_base: float = 0.1, backoff_cap: float = 5.0,
                 read_timeout: float = STREAM_READ_TIMEOUT_S,
                 client_id: str | None = None) -> None:
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"url must look like http://127.0.0.1:8000, not {url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.metrics = metrics if metrics is not None else Metrics()
        self.cursor = Cursor(name if name is not None else id(self), self.metrics, last_event_id)
        self.cursor.client_id = client_id  # X-Client-Id, for a gateway's per-client rate limit
        self.on_events = on_events
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.read_timeout = read_timeout
        self.error: PollError | None = None  # set when a 4xx stopped the client
        self.connections = 0  # connections opened so far (requests_per_event counts them too)
        self.delivered = 0  # events delivered so far
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._sock_lock = threading.Lock()

    @property
    def last_event_id(self) -> int:
        return self.cursor.last_event_id

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _connect_socket(self) -> socket.socket:
        """A TCP connection to the server, which `stop()` can shut down from another thread."""
        self.metrics.count_request()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT_S)
        except OSError as exc:
            raise ServerUnavailable(f"{type(exc).__name__}: {exc}") from exc
        sock.settimeout(self.read_timeout)
        with self._sock_lock:
            self._sock = sock
            if self._stop.is_set():  # stop() came while we connected
                sock.shutdown(socket.SHUT_RDWR)
        self.connections += 1
        return sock

    def _deliver(self, events: list[Event], received_at: float) -> None:
        moved = self.cursor.apply(200, {}, lambda: events, received_at)
        self.delivered += len(moved)
        if moved and self.on_events is not None:
            self.on_events(moved)

    def _gone(self, body: dict[str, Any], received_at: float) -> None:
        self.cursor.apply(410, {}, lambda: body, received_at)

    def _stream_once(self) -> None:
        """Hold one connection until it ends. Raises ServerUnavailable or PollError."""
        raise NotImplementedError

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            delivered = self.delivered
            try:
                self._stream_once()
            except PollError as exc:
                self.error = exc
                self.metrics.record_error(str(exc))
                return  # the same request would fail the same way: stop, keep the reason
            except RateLimited as exc:  # a gateway's 429 to the connect: wait as it says
                self.metrics.count_rate_limited()
                self._stop.wait(rate_limited_delay(exc))
                continue
            except ServerUnavailable as exc:
                if self._stop.is_set():
                    return  # our own stop() cut the connection; that is not an error
                self.metrics.record_error(str(exc))
                failures += 1
            else:
                # The stream ended (a server restart, or a new stream id to start over on).
                failures = 0 if self.delivered > delivered else failures + 1
            finally:
                with self._sock_lock:
                    if self._sock is not None:
                        self._sock.close()
                    self._sock = None
            if failures:
                self._stop.wait(backoff_delay(failures, self.backoff_base, self.backoff_cap))

    def start(self) -> StreamClient:
        """Start streaming in a daemon thread; returns self so `c = Client(...).start()` works."""
        if self.running:
            return self
        self._stop.clear()
        self.error = None
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        """Stop streaming; returns within `timeout` even while the connection is idle."""
        self._stop.set()
        with self._sock_lock:
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> StreamClient:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return {}


class SSEClient(StreamClient):
    """Read `GET /sse`: one response carries every event; resume with `Last-Event-ID`."""

    def _stream_once(self) -> None:
        sock = self._connect_socket()
        conn = http.client.HTTPConnection(self.host, self.port)
        conn.sock = sock
        try:
            conn.request("GET", "/sse", headers={
                "Accept": "text/event-stream", "User-Agent": "polling-lab",
                "Last-Event-ID": str(self.cursor.last_event_id),
                **self.cursor.request_headers()})
            response = conn.getresponse()
            if response.status != 200:
                body = response.read()
                self.cursor.apply(response.status, response.headers, lambda: _json_body(body),
                                  time.time())  # raises PollError or ServerUnavailable
                raise ServerUnavailable(f"HTTP {response.status} instead of a stream")
            if self.cursor.observe_stream(response.headers.get(STREAM_HEADER)):
                return  # the server restarted afresh: reconnect at once, from 0
            parser = SSEParser()
            while not self._stop.is_set():
                chunk = response.read1(65536)
                if not chunk:
                    return  # the server ended the stream
                received_at = time.time()
                events: list[Event] = []
                for message in parser.feed(chunk):
                    if message.event == "gone":
                        self._deliver(events, received_at)
                        events = []
                        self._gone(_json_body(message.data.encode()), received_at)
                    elif message.event == "message":
                        events.append(json.loads(message.data))
                if events:
                    self._deliver(events, received_at)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise ServerUnavailable(f"{type(exc).__name__}: {exc}") from exc
        finally:
            conn.close()


class WebSocketClient(StreamClient):
    """Read `WS /ws`: a hello, then a frame per event; resume with `?last_event_id=`.

    `compression=None` by default: an event is a frame of about 80 bytes, and per-message
    deflate keeps a zlib context per connection on both ends (docs/streams.md measures it).
    """

    def __init__(self, url: str, *, compression: str | None = None, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.compression = compression
        self._ws: Any = None

    def publish(self, message: str) -> None:
        """Send a `publish` frame; the server answers `published` (or `error`) on the stream."""
        if self._ws is None:
            raise ServerUnavailable("not connected; start() the client and wait for events")
        self._ws.send(json.dumps({"type": "publish", "message": message}))

    def _stream_once(self) -> None:
        sock = self._connect_socket()
        query = urlencode({"last_event_id": self.cursor.last_event_id})
        try:
            with connect(f"ws://{self.host}:{self.port}/ws?{query}", sock=sock, proxy=None,
                         compression=self.compression, open_timeout=CONNECT_TIMEOUT_S,
                         close_timeout=0.5, user_agent_header="polling-lab",
                         additional_headers=self.cursor.request_headers()) as ws:
                self._ws = ws
                hello = json.loads(ws.recv(timeout=self.read_timeout))
                if self.cursor.observe_stream(hello.get("stream")):
                    return  # the server restarted afresh: reconnect at once, from 0
                while not self._stop.is_set():
                    frame = json.loads(ws.recv(timeout=self.read_timeout))
                    received_at = time.time()
                    if frame.get("type") == "event":
                        self._deliver([frame["event"]], received_at)
                    elif frame.get("type") == "gone":
                        self._gone(frame, received_at)
                    elif frame.get("type") == "error":
                        self.metrics.record_error(f"{frame.get('error')}: {frame.get('detail')}")
        except InvalidStatus as exc:
            response = exc.response
            self.cursor.apply(response.status_code, response.headers,
                              lambda: _json_body(bytes(response.body or b"")), time.time())
            raise ServerUnavailable(f"HTTP {response.status_code} instead of a WebSocket") from exc
        except (OSError, WebSocketException, ValueError) as exc:
            raise ServerUnavailable(f"{type(exc).__name__}: {exc}") from exc
        finally:
            self._ws = None
