"""The proxy as a small gateway: upstreams in rotation, health checks, a token and a rate limit.

What an API gateway in front of several long-poll servers does, kept small enough to read:

- **Round-robin over healthy upstreams.** Each request goes to the next upstream that passed
  its last check. An upstream whose connect fails is marked down at once (passively), and a
  health check of `GET /health` every 0.25 s (actively) marks it down when it stops answering
  and up again when it answers, so a dead server leaves the rotation within a second.
- **A token at the door**, checked exactly like the servers' `--token` (servers.contract).
- **A per-client rate limit**: a token bucket per client, answered with 429 and Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from servers.contract import ApiError, check_token
from servers.startup import check_token_choice

HEALTH_INTERVAL_S = 0.25  # between two health checks of one upstream
HEALTH_TIMEOUT_S = 0.5  # a /health slower than this counts as down (a paused server)
MAX_CLIENT_ID_CHARS = 200
MAX_TRACKED_CLIENTS = 10_000  # rate-limit buckets kept; idle (full) ones are dropped beyond it
CLIENT_ID_HEADER = "X-Client-Id"


def check_upstream_url(url: str) -> str:
    """The upstream URL without a trailing slash; ValueError if it is not an http:// URL."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--upstream must be an http:// URL, not {url!r}")
    return url.rstrip("/")


@dataclass
class Upstream:
    """One server behind the gateway: whether it is in the rotation, and what it was sent."""

    url: str
    healthy: bool = True  # optimistic at start: the first check corrects it within 0.25 s
    forwarded: int = 0  # requests (and stream connections) sent to it
    connect_failures: int = 0  # passive marks: a connect that failed
    failed_checks: int = 0
    marked_down: int = 0  # times it left the rotation
    statuses: Counter[int] = field(default_factory=Counter)
    reason: str = ""  # why it is down, for /_proxy/stats

    def mark(self, healthy: bool, reason: str = "") -> None:
        if self.healthy and not healthy:
            self.marked_down += 1
        self.healthy = healthy
        self.reason = "" if healthy else reason

    def snapshot(self) -> dict[str, Any]:
        return {"url": self.url, "healthy": self.healthy, "down_because": self.reason,
                "forwarded": self.forwarded, "connect_failures": self.connect_failures,
                "failed_checks": self.failed_checks, "marked_down": self.marked_down,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())}}


class Upstreams:
    """The rotation: which upstream the next request goes to, and the health checks."""

    def __init__(self, urls: list[str]) -> None:
        if not urls:
            raise ValueError("give at least one --upstream URL")
        self.members = [Upstream(check_upstream_url(url)) for url in urls]
        self._turn = 0

    def candidates(self) -> list[Upstream]:
        """Every upstream in the order to try them: the healthy ones from the next in turn,
        then the ones marked down (tried last, as nginx does when all are down, so that one
        server restarted a moment ago is reached before its next health check)."""
        healthy = [m for m in self.members if m.healthy]
        down = [m for m in self.members if not m.healthy]
        if healthy:
            start = self._turn % len(healthy)
            self._turn += 1
            healthy = healthy[start:] + healthy[:start]
        return healthy + down

    def snapshot(self) -> dict[str, Any]:
        """`upstream` (the first, as a one-upstream proxy always reported) and `upstreams`."""
        return {"upstream": self.members[0].url,
                "upstreams": [m.snapshot() for m in self.members]}

    def connect_failed(self, upstream: Upstream, exc: BaseException) -> None:
        upstream.connect_failures += 1
        upstream.mark(False, f"connect failed: {exc}"[:200])

    @contextlib.asynccontextmanager
    async def checking(self) -> AsyncIterator[None]:
        """Check the upstreams' health while inside. Only with two or more: one upstream has
        no rotation to leave, and is only marked down passively."""
        if len(self.members) < 2:
            yield
            return
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                         cookie_jar=aiohttp.DummyCookieJar()) as session:
            watch = asyncio.ensure_future(self.watch(session))
            try:
                yield
            finally:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch

    async def watch(self, session: aiohttp.ClientSession) -> None:
        """Check every upstream's `/health`, forever, every HEALTH_INTERVAL_S seconds."""
        while True:
            await asyncio.gather(*(self.check(session, m) for m in self.members))
            await asyncio.sleep(HEALTH_INTERVAL_S)

    async def check(self, session: aiohttp.ClientSession, upstream: Upstream) -> None:
        try:
            async with session.get(upstream.url + "/health",
                                   timeout=aiohttp.ClientTimeout(total=HEALTH_TIMEOUT_S)) as r:
                await r.read()
                ok, reason = r.status == 200, f"/health answered {r.status}"
        except asyncio.TimeoutError:
            ok, reason = False, f"/health did not answer within {HEALTH_TIMEOUT_S:g} s"
        except aiohttp.ClientError as exc:
            ok, reason = False, f"/health failed: {exc}"
        if not ok:
            upstream.failed_checks += 1
        upstream.mark(ok, reason[:200])


def check_gateway_token(token: str | None, authorization: str | None) -> None:
    """The servers' token rules (servers.contract.check_token), with a gateway's wording."""
    try:
        check_token(token, authorization)
    except ApiError as exc:
        raise ApiError(exc.status, exc.code, "This gateway was started with --token; send the "
                       "header 'Authorization: Bearer <token>' to publish through it.") from None


def is_publish_frame(text: str) -> bool:
    """True for a WebSocket text frame that asks to publish (API.md, "Streams")."""
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        return False  # the server answers a bad frame itself
    return isinstance(frame, dict) and frame.get("type") == "publish"


class RateLimiter:
    """A token bucket per client: `rate` requests per second, bursts of up to `burst`.

    A client that has waited fills its bucket up to `burst`, so a client polling at a steady
    pace is never refused, and one that sends a burst gets `burst` answers, then `rate` a second.
    """

    def __init__(self, rate: float, burst: int | None = None) -> None:
        if not 0 < rate <= 1_000_000:
            raise ValueError(f"--rate-limit must be more than 0 requests per second, not {rate}")
        self.rate = rate
        self.burst = burst if burst is not None else max(1, math.ceil(rate))
        if self.burst < 1:
            raise ValueError(f"--rate-burst must be at least 1, not {self.burst}")
        self._buckets: dict[str, tuple[float, float]] = {}  # client: (tokens, when)
        self.refused = 0

    def take(self, client: str, now: float | None = None) -> int:
        """Take one token for `client`: 0 if allowed, else the whole seconds to wait (>= 1)."""
        now = time.monotonic() if now is None else now
        tokens, when = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - when) * self.rate)
        if tokens >= 1:
            self._buckets[client] = (tokens - 1, now)
            self._forget_idle(now)
            return 0
        self._buckets[client] = (tokens, now)
        self.refused += 1
        return max(1, math.ceil((1 - tokens) / self.rate))

    def _forget_idle(self, now: float) -> None:
        """Drop full buckets when too many clients are tracked: memory stays bounded."""
        if len(self._buckets) <= MAX_TRACKED_CLIENTS:
            return
        self._buckets = {k: (t, w) for k, (t, w) in self._buckets.items()
                         if t + (now - w) * self.rate < self.burst}


def client_key(headers: Any, peer: str | None) -> str:
    """Whose bucket a request takes from: its `X-Client-Id`, else its address.

    Every client on this machine comes from 127.0.0.1, so without the header they share one
    bucket, as the users behind one NAT share one address at a real gateway.
    """
    given = (headers.get(CLIENT_ID_HEADER) or "").strip()
    return f"id:{given[:MAX_CLIENT_ID_CHARS]}" if given else f"addr:{peer or '?'}"


class Door:
    """What the gateway checks before forwarding: the rate limit, then the token on publishes."""

    def __init__(self, token: str | None = None, rate_limit: float | None = None,
                 rate_burst: int | None = None) -> None:
        if token is not None:
            check_token_choice(token)
        self.token = token
        self.limiter = RateLimiter(rate_limit, rate_burst) if rate_limit is not None else None
        self.unauthorized = 0  # publishes refused for a missing or wrong token

    def admit(self, method: str, path: str, headers: Any,
              peer: str | None) -> tuple[int, str, str, dict[str, str]] | None:
        """None to let the request in, else the refusal: (status, code, detail, headers)."""
        if self.limiter is not None:
            wait = self.limiter.take(client_key(headers, peer))
            if wait:
                return (429, "rate_limited", f"This client sent more than {self.limiter.rate:g}"
                        f" requests per second (bursts of {self.limiter.burst}) through the "
                        f"gateway; wait {wait} s, as Retry-After says, then retry.",
                        {"Retry-After": str(wait)})
        if method == "POST" and path == "/trigger_event":
            try:
                check_gateway_token(self.token, headers.get("Authorization"))
            except ApiError as exc:
                self.unauthorized += 1
                return exc.status, exc.code, exc.detail, {}
        return None

    def frame_guard(self, authorization: str | None) -> Callable[[str], dict[str, Any] | None]:
        """For a WebSocket opened with `authorization`: what answers a publish frame it may not
        send (the server's own error frame, and the connection stays open), or None."""
        try:
            check_gateway_token(self.token, authorization)
        except ApiError as exc:
            refusal = {"type": "error", "error": exc.code, "detail": exc.detail}

            def refuse(text: str) -> dict[str, Any] | None:
                if is_publish_frame(text):
                    self.unauthorized += 1
                    return refusal
                return None
            return refuse
        return lambda text: None

    def snapshot(self) -> dict[str, Any]:
        limiter = self.limiter
        return {"token": self.token is not None, "unauthorized": self.unauthorized,
                "rate_limit": limiter.rate if limiter else None,
                "rate_burst": limiter.burst if limiter else None,
                "rate_limited": limiter.refused if limiter else 0}
