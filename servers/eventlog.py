"""What every bundled server shares: the event log, the parameter rules, the counters, the CLI.

The servers in this package differ only in *how they wait* for the next event. Everything else
(what an event is, which parameters are valid, what `/stats` reports, how a server is started)
lives here, so that placing two server files side by side shows nothing but the waiting.
"""

from __future__ import annotations

import argparse
import errno
import hmac
import json
import math
import os
import resource
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

MAX_MESSAGE_CHARS = 4096
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_TIMEOUT_S = 300.0
DEFAULT_MESSAGE = "Manual event triggered!"
STREAM_HEADER = "X-Stream-Id"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class Event(TypedDict):
    id: int
    timestamp: float
    message: str


class ApiError(Exception):
    """A request the server refuses, with the JSON body and status that API.md prescribes."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail, **self.extra}


class EventLog:
    """An in-memory, bounded, thread-safe log of events with consecutive ids.

    Ids are consecutive, so the events after a cursor start at a computed index: reading what a
    waiter has missed costs O(new events), never a scan of the whole log (the article's servers
    filter the whole list on every check). Only the newest `retention` events are kept; a cursor
    older than that gets 410 so the client knows it missed something.
    """

    def __init__(self, retention: int = 10_000) -> None:
        if retention < 1:
            raise ValueError("retention must be at least 1 event")
        self.retention = retention
        self.stream = uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._first_id = 1  # id of self._events[0] (or of the next event, while empty)
        self._on_publish: list[Callable[[Event], None]] = []

    @property
    def last_id(self) -> int:
        return self._first_id + len(self._events) - 1

    @property
    def oldest_id(self) -> int:
        """Id of the oldest retained event, 0 while nothing was ever published."""
        return self._oldest_kept() if self._events else 0

    def _oldest_kept(self) -> int:
        return max(self._first_id, self.last_id - self.retention + 1)

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        """Call `callback(event)` after each publish, in the publishing thread."""
        self._on_publish.append(callback)

    def publish(self, message: str = DEFAULT_MESSAGE) -> Event:
        with self._lock:
            event: Event = {"id": self.last_id + 1, "timestamp": time.time(), "message": message}
            self._store(event)
            self._events.append(event)
            excess = len(self._events) - self.retention
            # Trim in batches, so that deleting from the front of the list stays amortised O(1).
            if excess >= max(1, self.retention // 4):
                del self._events[:excess]
                self._first_id += excess
                self._forget_before(self._first_id)
        for callback in self._on_publish:
            callback(event)
        return event

    def _store(self, event: Event) -> None:
        """Persist a new event before it becomes visible; in memory, there is nothing to do."""

    def _forget_before(self, first_kept_id: int) -> None:
        """Drop persisted events older than the retention window; in memory, nothing to do."""

    def since(self, last_event_id: int, limit: int = DEFAULT_LIMIT) -> list[Event]:
        """The events with id > last_event_id, oldest first, at most `limit`.

        Raises ApiError(410) when events after the cursor are no longer retained.
        """
        with self._lock:
            oldest_kept = self._oldest_kept()
            if self._events and last_event_id < oldest_kept - 1:
                raise ApiError(
                    410,
                    "gone",
                    f"Events after id {last_event_id} are no longer kept; the oldest kept is "
                    f"{oldest_kept}. Resync from last_event_id={oldest_kept - 1} and record "
                    "the gap.",
                    oldest_id=oldest_kept,
                )
            start = max(last_event_id + 1, oldest_kept) - self._first_id
            return self._events[start : start + limit]


# --- parameter rules -------------------------------------------------------------------------


@dataclass(frozen=True)
class PollParams:
    last_event_id: int
    limit: int
    timeout: float


def _bad(name: str, value: str, rule: str) -> ApiError:
    return ApiError(400, "bad_parameter", f"{name}={value!r} is not valid: {rule}.")


def _int_param(args: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = args.get(name)
    if raw is None:
        return default
    rule = f"use an integer from {low} to {high}" if high < 2**62 else f"use an integer >= {low}"
    try:
        value = int(raw.strip())
    except ValueError:
        raise _bad(name, raw, rule) from None
    if not low <= value <= high:
        raise _bad(name, raw, rule)
    return value


def parse_poll_params(args: Mapping[str, str], default_timeout: float) -> PollParams:
    """Validate `last_event_id`, `limit` and `timeout` once, the same way for every server."""
    last_event_id = _int_param(args, "last_event_id", 0, 0, 2**62)
    limit = _int_param(args, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    raw = args.get("timeout")
    timeout = default_timeout
    if raw is not None:
        rule = f"use a number of seconds from 0 to {MAX_TIMEOUT_S:g}"
        try:
            timeout = float(raw.strip())
        except ValueError:
            raise _bad("timeout", raw, rule) from None
        if not (math.isfinite(timeout) and 0 <= timeout <= MAX_TIMEOUT_S):
            raise _bad("timeout", raw, rule)
    return PollParams(last_event_id, limit, timeout)


def parse_message(body: bytes, query: Mapping[str, str]) -> str:
    """The message of a `/trigger_event`: from the JSON body, else `?message=`, else the default."""
    message: object = None
    if body.strip():
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):  # nesting too deep: also bad
            raise ApiError(
                400,
                "malformed_json",
                'The request body is not valid JSON; send {"message": "..."} or no body at all.',
            ) from None
        if not isinstance(data, dict):
            raise ApiError(
                422, "bad_body", 'The JSON body must be an object such as {"message": "hello"}.'
            )
        message = data.get("message")
    if message is None:
        message = query.get("message", DEFAULT_MESSAGE)
    if not isinstance(message, str):
        raise ApiError(422, "bad_parameter", "message must be a JSON string, for example \"hi\".")
    try:
        message.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate such as "\ud800": valid JSON, not valid text
        raise ApiError(
            422, "bad_parameter", "message must be valid Unicode text; it contains a lone "
            "surrogate such as \\ud800, which cannot be sent back as UTF-8."
        ) from None
    if len(message) > MAX_MESSAGE_CHARS:
        raise ApiError(
            413,
            "message_too_long",
            f"The message has {len(message)} characters; the limit is {MAX_MESSAGE_CHARS}.",
        )
    return message


def check_token(config: ServerConfig, authorization: str | None) -> None:
    """Refuse a publish without the server's token, when it was started with one."""
    if config.token is None:
        return
    if not (authorization and hmac.compare_digest(authorization, f"Bearer {config.token}")):
        raise ApiError(
            401,
            "unauthorized",
            "This server was started with --token; send the header 'Authorization: Bearer "
            "<token>' (connect(url, token) does it for you).",
        )


def other_stream(log: EventLog, claimed: str | None) -> bool:
    """True when a poll says (in `X-Stream-Id`) that its cursor belongs to another event log.

    That client has not yet seen this server restart. Holding its poll would keep it waiting a
    whole hold for ids it has already passed; a 204 now, carrying this log's stream id, lets it
    reset its cursor at once. Clients that send no `X-Stream-Id` are held as usual.
    """
    return claimed is not None and claimed != log.stream


def not_found(path: str) -> ApiError:
    return ApiError(
        404,
        "not_found",
        f"There is no {path}; the endpoints are /health, /events, /poll_for_updates, "
        "/trigger_event and /stats.",
    )


def method_not_allowed(method: str, path: str, allowed: str) -> ApiError:
    return ApiError(
        405, "method_not_allowed", f"{path} does not accept {method}; use {allowed}.",
        headers={"Allow": allowed},
    )


ALLOWED_METHODS = {
    "/health": "GET",
    "/events": "GET",
    "/poll_for_updates": "GET",
    "/stats": "GET",
    "/trigger_event": "POST",
}


# --- counters --------------------------------------------------------------------------------


def rss_bytes() -> int:
    """Resident memory of this process, from /proc where available."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the peak is the best we can do
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


@dataclass
class Stats:
    """The counters behind `/stats`. Thread-safe, because the Flask server is threaded."""

    server: str
    log: EventLog
    requests: dict[str, int] = field(
        default_factory=lambda: {"events": 0, "poll_for_updates": 0, "trigger_event": 0}
    )
    empty_responses: int = 0
    waiting: int = 0
    peak_waiting: int = 0
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_request(self, endpoint: str) -> None:
        with self._lock:
            self.requests[endpoint] += 1

    def count_empty(self) -> None:
        with self._lock:
            self.empty_responses += 1

    def wait_started(self, limit: int = sys.maxsize) -> None:
        """Count one more held poll, or refuse it with 503 when `limit` are already held."""
        with self._lock:
            if self.waiting >= limit:
                raise ApiError(
                    503,
                    "too_many_waiting",
                    f"This server already holds {limit} long polls, its limit; retry after the "
                    "number of seconds in the Retry-After header.",
                    headers={"Retry-After": "2"},
                )
            self.waiting += 1
            self.peak_waiting = max(self.peak_waiting, self.waiting)

    def wait_ended(self) -> None:
        with self._lock:
            self.waiting -= 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "server": self.server,
                "stream": self.log.stream,
                "requests": dict(self.requests),
                "empty_responses": self.empty_responses,
                "events_published": self.log.last_id,
                "last_event_id": self.log.last_id,
                "oldest_event_id": self.log.oldest_id,
                "waiting": self.waiting,
                "peak_waiting": self.peak_waiting,
                "threads": threading.active_count(),
                "rss_bytes": rss_bytes(),
                "uptime_s": round(time.monotonic() - self.started, 3),
            }


# --- configuration and start-up --------------------------------------------------------------


@dataclass(frozen=True)
class ServerConfig:
    """Everything a bundled server can be told at start. Defaults follow API.md."""

    host: str = "127.0.0.1"
    port: int = 0
    hold: float = 30.0  # default long-poll hold, seconds
    retention: int = 10_000  # events kept in memory
    generate_every: float | None = None  # publish a generated event every N seconds
    check_interval: float = 1.0  # the naive server's sleep between checks
    threaded: bool = True  # the Flask server only
    store: str | None = None  # None (in memory) or "sqlite:PATH" (survives restarts)
    max_waiting: int = 15_000  # long polls held at once; beyond it, 503 with Retry-After
    token: str | None = None  # required by POST /trigger_event when set

    def __post_init__(self) -> None:
        if not 0 <= self.hold <= MAX_TIMEOUT_S:
            raise ValueError(f"hold must be from 0 to {MAX_TIMEOUT_S:g} seconds, not {self.hold}")
        if self.retention < 1:
            raise ValueError("retention must be at least 1 event")
        if self.check_interval <= 0:
            raise ValueError("check_interval must be a positive number of seconds")
        if self.generate_every is not None and self.generate_every <= 0:
            raise ValueError("generate_every must be a positive number of seconds")
        if self.max_waiting < 0:
            raise ValueError("max_waiting must be 0 or more")
        if self.token is None and self.host not in LOOPBACK:
            raise ValueError(
                f"--host {self.host} lets other machines publish events; start with "
                "--token SECRET so that only people who know it can (learners then use "
                "connect(url, token))"
            )


def parse_config(name: str, argv: list[str] | None = None, *, flask: bool = False) -> ServerConfig:
    """Read a ServerConfig from the command line of `python -m servers.<name>`."""
    p = argparse.ArgumentParser(prog=f"python -m servers.{name}", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    p.add_argument("--hold", type=float, default=30.0, help="default long-poll hold, seconds")
    p.add_argument("--retention", type=int, default=10_000, help="events kept in memory")
    p.add_argument("--generate-every", type=float, default=None, metavar="S",
                   help="publish a generated event every S seconds")
    p.add_argument("--store", default=None, metavar="memory|sqlite:PATH",
                   help="where events live; sqlite:PATH keeps stream and ids across restarts")
    p.add_argument("--max-waiting", type=int, default=15_000, metavar="N",
                   help="long polls held at once; more get 503 with Retry-After")
    p.add_argument("--token", default=None,
                   help="require 'Authorization: Bearer TOKEN' on POST /trigger_event "
                        "(needed with a --host other than loopback)")
    if flask:
        p.add_argument("--check-interval", type=float, default=1.0, metavar="S",
                       help="how long the naive long poll sleeps between checks")
        mode = p.add_mutually_exclusive_group()
        mode.add_argument("--threaded", dest="threaded", action="store_true", default=True,
                          help="one thread per connection (Flask's default since 1.0)")
        mode.add_argument("--single-threaded", dest="threaded", action="store_false",
                          help="serve one request at a time, to show head-of-line blocking")
    args = p.parse_args(argv)
    try:
        return ServerConfig(**vars(args))
    except ValueError as exc:
        p.error(str(exc))


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind a listening TCP socket, and say what to do if the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise SystemExit(
                f"Port {port} is in use by another program; pass --port 0 (or leave port unset "
                "in launch()) to pick a free port."
            ) from None
        raise SystemExit(f"Cannot bind {host}:{port}: {exc.strerror}.") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def die_with_parent() -> None:
    """When started by `helpers.launch()`, ask Linux to SIGTERM us if the launcher dies.

    This is what takes a server along when its Jupyter kernel is restarted or killed.
    """
    parent = os.environ.get("POLLING_LAB_PARENT_PID")
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != int(parent):  # the launcher died before prctl took effect
        raise SystemExit("The process that launched this server has exited; not starting.")


def announce(name: str, sock: socket.socket, config: ServerConfig) -> str:
    """Print the URL actually bound. The launcher waits for this line in the server's log."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"
    print(f"polling-lab {name} serving on {url}", flush=True)
    if host not in LOOPBACK:
        print(
            f"WARNING: {name} is reachable from other machines on {host}: anyone who can reach "
            "it can read its events. Publishing needs the --token.",
            flush=True,
        )
    return url


def start_generator(config: ServerConfig, publish: Callable[[str], object]) -> None:
    """Publish an event every `generate_every` seconds from a daemon thread, like the article."""
    every = config.generate_every
    if every is None:
        return

    def run() -> None:
        n = 0
        while True:
            time.sleep(every)
            n += 1
            publish(f"Generated event #{n}")

    threading.Thread(target=run, name="event-generator", daemon=True).start()
