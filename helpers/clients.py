"""Polling clients that run in a background thread and report into a `Metrics` recorder.

Both follow the article's advice and the kit's API: one `requests.Session` (its connection is
reused between polls), a (connect, read) timeout tuple whose read part is longer than the
server's hold, a `last_event_id` cursor, and exponential backoff with full jitter after
connection errors and 5xx. A 502 or 504 from a proxy that ended a long poll's hold is an empty
poll, not an error (see `gateway_ended_hold`); a gateway's 429 is waited out for its Retry-After
(see `rate_limited_delay`). They never print: read `client.metrics` or pass
`on_events`.
"""

from __future__ import annotations

import random
import socket
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
import urllib3.connection
from requests.adapters import HTTPAdapter

from helpers.errors import PollError, RateLimited, ServerUnavailable
from helpers.http import error_for, json_or_none
from helpers.metrics import Metrics
from servers.contract import LOOPBACK, STREAM_HEADER, Event
from servers.gateway import CLIENT_ID_HEADER

CONNECT_TIMEOUT_S = 3.05
READ_MARGIN_S = 5.0  # a long poll's read timeout is the hold plus this
GATEWAY_STATUSES = (502, 504)  # what a proxy (the bundled one, nginx) answers when it gives up
GATEWAY_HELD_MIN_S = 0.5  # a gateway answer sooner than this did not end a hold
GATEWAY_JITTER_S = 0.05  # re-poll after a gateway's hold timeout within this, not at once
RATE_LIMIT_JITTER_S = 0.25  # after a 429, Retry-After plus up to this, so clients spread out


def gateway_ended_hold(exc: ServerUnavailable, held_s: float, hold: float) -> bool:
    """True if `exc` is a proxy's 502/504 that ended a long poll held for `held_s` seconds.

    A proxy whose read timeout (nginx's `proxy_read_timeout`) is shorter than the hold answers
    504 to every quiet hold (some proxies 502). Nothing went wrong: the client should ask again
    at once, as after a 204, or its backoff grows through a quiet spell and the next event
    waits behind it. A gateway answer that came quickly (the upstream is down) is a real error.
    """
    return (exc.status in GATEWAY_STATUSES and hold > 0
            and held_s >= min(GATEWAY_HELD_MIN_S, hold))


def gateway_repoll_delay(rng: random.Random | None = None) -> float:
    """A small jitter before re-polling after a gateway's hold timeout, so that clients held
    together do not all come back in the same millisecond."""
    return (rng or random).uniform(0, GATEWAY_JITTER_S)


def rate_limited_delay(exc: RateLimited, rng: random.Random | None = None) -> float:
    """How long to wait after a gateway's 429: its Retry-After (1 s if it gave none), plus a
    small jitter so that clients refused together do not all come back together. Not a
    growing backoff: the gateway said exactly when to come back."""
    return (exc.retry_after or 1.0) + (rng or random).uniform(0, RATE_LIMIT_JITTER_S)


def backoff_delay(failures: int, base: float = 0.1, cap: float = 5.0,
                  rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: a uniform draw from [0, min(cap, base * 2**n)).

    Full jitter spreads a crowd of clients that failed together (a server restart) across the
    whole window, instead of having them all come back at the same instant.
    """
    ceiling = min(cap, base * 2 ** max(0, failures - 1))
    return (rng or random).uniform(0, ceiling)


class Cursor:
    """A client's place in the event stream, and the rules for moving it.

    Shared by the threaded clients and the asyncio swarm, so both interpret the server's answers
    identically: 200 moves the cursor, a changed `X-Stream-Id` resets it, 410 skips to what is
    still retained and records the gap, other 4xx stop the client, 5xx are retried.
    """

    def __init__(self, name: Hashable, metrics: Metrics, last_event_id: int = 0) -> None:
        self.name = name
        self.metrics = metrics
        self.last_event_id = last_event_id
        self.stream: str | None = None
        #: Sent as `X-Client-Id` when set: a gateway's rate limit then counts this client on its
        #: own, instead of in the bucket of its address (which every loopback client shares).
        self.client_id: str | None = None
        metrics.start_client(name, last_event_id)

    def request_headers(self) -> dict[str, str]:
        """Tell the server which stream the cursor belongs to, so a restart shows up at once,
        and a gateway which client this is, when it has a `client_id`."""
        headers = {STREAM_HEADER: self.stream} if self.stream else {}
        if self.client_id:
            headers[CLIENT_ID_HEADER] = self.client_id
        return headers

    def observe_stream(self, stream: str | None) -> bool:
        """Adopt the server's `stream` id; True, with the cursor reset to 0, when it changed.

        The stream clients (`helpers.streams`) call this with the id a connection reports.
        """
        if stream and self.stream and stream != self.stream:
            # The server restarted with a fresh in-memory log: its ids start again at 1, so
            # waiting for ids after our old cursor would wait forever. Start over instead.
            self.stream = stream
            self.last_event_id = 0
            self.metrics.record_stream_reset(self.name)
            return True
        self.stream = stream or self.stream
        return False

    def apply(self, status: int, headers: Any, payload: Callable[[], Any],
              received_at: float) -> list[Event]:
        """Update the cursor from one response and return the new events it carried."""
        if self.observe_stream(headers.get(STREAM_HEADER)):
            return []
        if status == 204:
            self.metrics.count_empty()
            return []
        if status == 200:
            events: list[Event] = payload()
            if not events:
                self.metrics.count_empty()
                return []
            self.metrics.record_events(self.name, events, received_at)
            self.last_event_id = max(self.last_event_id, events[-1]["id"])
            return events
        body = json_or_none(payload)
        if status == 410 and isinstance(body, dict) and isinstance(body.get("oldest_id"), int):
            resume_after = body["oldest_id"] - 1
            self.metrics.record_gap(self.name, resume_after)
            self.last_event_id = resume_after
            return []
        raise error_for(status, body, headers,
                        fallback_detail=f"HTTP {status} without a JSON error body")


class _AbortableAdapter(HTTPAdapter):
    """An adapter that remembers its sockets, so `abort()` can end a read that is blocked.

    requests has no way to cancel a request in flight; shutting the socket down makes the
    blocked read return at once, which is how `stop()` returns promptly during a 30 s hold.
    """

    def __init__(self) -> None:
        self.sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self.aborted = False  # set by abort(), cleared by the client's start()
        super().__init__(pool_connections=1, pool_maxsize=1, max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        adapter = self

        class Connection(urllib3.connection.HTTPConnection):
            def connect(self) -> None:
                super().connect()
                adapter.sockets.add(self.sock)
                if adapter.aborted:  # abort() came while we connected: don't start a hold
                    self.sock.shutdown(socket.SHUT_RDWR)

        class Pool(urllib3.HTTPConnectionPool):
            ConnectionCls = Connection

        self.poolmanager.pool_classes_by_scheme = {**self.poolmanager.pool_classes_by_scheme,
                                                   "http": Pool}

    def abort(self) -> None:
        self.aborted = True
        for sock in list(self.sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class PollClient:
    """Common machinery of the short- and long-poll clients; use one of those."""

    endpoint = ""

    def __init__(self, url: str, *, metrics: Metrics | None = None, last_event_id: int = 0,
                 limit: int = 100, name: Hashable | None = None,
                 on_events: Callable[[Sequence[Event]], None] | None = None,
                 backoff_base: float = 0.1, backoff_cap: float = 5.0,
                 client_id: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.metrics = metrics if metrics is not None else Metrics()
        self.cursor = Cursor(name if name is not None else id(self), self.metrics, last_event_id)
        self.cursor.client_id = client_id  # X-Client-Id, for a gateway's per-client rate limit
        self.limit = limit
        self.on_events = on_events
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.error: PollError | None = None  # set when a 4xx stopped the client
        self._adapter = _AbortableAdapter()
        self.session = requests.Session()
        # The kit's servers are on this machine: a proxy from the environment can't reach them.
        self.session.trust_env = urlsplit(self.url).hostname not in LOOPBACK
        self.session.mount("http://", self._adapter)
        self.session.headers["User-Agent"] = "polling-lab"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def last_event_id(self) -> int:
        return self.cursor.last_event_id

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _params(self) -> dict[str, Any]:
        return {"last_event_id": self.cursor.last_event_id, "limit": self.limit}

    @property
    def stopping(self) -> bool:
        """True once `stop()` was called: a request failing now failed because of it."""
        return self._stop.is_set()

    def request_timeout(self) -> tuple[float, float]:
        """The (connect, read) timeout of the next request, in seconds; each client sets it."""
        raise NotImplementedError

    def held_for(self) -> float:
        """How long the server may hold one request, in seconds: a short poll is not held."""
        return 0.0

    def _pause(self, request_started: float) -> None:
        """What to do between two successful polls (a short-poll client sleeps)."""

    def poll_once(self) -> list[Event]:
        """Send one request, update the cursor and metrics, and return the new events.

        Raises ServerUnavailable (worth retrying) or PollError (a 4xx: don't retry).
        """
        self.metrics.count_request()
        try:
            response = self.session.get(self.url + self.endpoint, params=self._params(),
                                        headers=self.cursor.request_headers(),
                                        timeout=self.request_timeout())
        except requests.RequestException as exc:
            raise ServerUnavailable(f"{type(exc).__name__}: {exc}") from exc
        events = self.cursor.apply(response.status_code, response.headers, response.json,
                                   time.time())
        if events and self.on_events is not None:
            self.on_events(events)
        return events

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.poll_once()
            except PollError as exc:
                self.error = exc
                self.metrics.record_error(str(exc))
                return  # the same request would fail the same way: stop, keep the reason
            except ServerUnavailable as exc:
                if self._stop.is_set():
                    return  # our own stop() cut the connection; that is not an error
                if isinstance(exc, RateLimited):
                    self.metrics.count_rate_limited()  # the gateway said when: no backoff growth
                    self._stop.wait(rate_limited_delay(exc))
                    continue
                if gateway_ended_hold(exc, time.monotonic() - started, self.held_for()):
                    self.metrics.count_gateway_timeout()  # an empty poll: no backoff growth
                    self._stop.wait(gateway_repoll_delay())
                    continue
                failures += 1
                self.metrics.record_error(str(exc))
                delay = backoff_delay(failures, self.backoff_base, self.backoff_cap)
                self._stop.wait(max(delay, exc.retry_after or 0))
                continue
            failures = 0
            self._pause(started)

    def start(self) -> PollClient:
        """Start polling in a daemon thread; returns self so `c = Client(...).start()` works."""
        if self.running:
            return self
        self._stop.clear()
        self._adapter.aborted = False
        self.error = None
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        """Stop polling; returns within `timeout` even while a long poll is held."""
        self._stop.set()
        self._adapter.abort()
        if self._thread is not None:
            self._thread.join(timeout)
        self.session.close()

    def __enter__(self) -> PollClient:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class ShortPollClient(PollClient):
    """Ask `/events` every `interval` seconds; the server answers at once, often with `[]`."""

    endpoint = "/events"

    def __init__(self, url: str, interval: float = 1.0, **kwargs: Any) -> None:
        if interval <= 0:
            raise ValueError("interval must be a positive number of seconds")
        super().__init__(url, **kwargs)
        self.interval = interval

    def request_timeout(self) -> tuple[float, float]:
        """An answer comes at once: the read timeout is only a margin."""
        return (CONNECT_TIMEOUT_S, READ_MARGIN_S)

    def _pause(self, request_started: float) -> None:
        # Requests start every `interval` seconds, however long each one took.
        self._stop.wait(max(0.0, request_started + self.interval - time.monotonic()))


class LongPollClient(PollClient):
    """Ask `/poll_for_updates` to hold for `hold` seconds, and ask again as soon as it answers."""

    endpoint = "/poll_for_updates"

    def __init__(self, url: str, hold: float = 30.0, **kwargs: Any) -> None:
        if not 0 <= hold <= 300:
            raise ValueError("hold must be from 0 to 300 seconds (the server's range)")
        super().__init__(url, **kwargs)
        self.hold = hold

    def held_for(self) -> float:
        """How long the server may hold one request, in seconds."""
        return self.hold

    def _params(self) -> dict[str, Any]:
        return {**super()._params(), "timeout": self.hold}

    def request_timeout(self) -> tuple[float, float]:
        """The read timeout is the hold plus a margin."""
        # The read timeout must outlast the hold, or the client gives up just before the
        # server's own 204 arrives and mistakes an ordinary quiet period for an error.
        return (CONNECT_TIMEOUT_S, self.hold + READ_MARGIN_S)
