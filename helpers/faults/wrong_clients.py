"""Clients that are wrong on purpose, to show a failure before its fix.

`WatchedLongPollClient(read_timeout=...)` accepts a read timeout shorter than the hold,
`GatewayBlindClient` counts a proxy's 504 that ended a quiet hold as an error and backs off,
and `StreamBlindClient` ignores `X-Stream-Id` the way the article's client does. Use
`helpers.LongPollClient` in real code.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import requests
from requests.structures import CaseInsensitiveDict

from helpers.clients import CONNECT_TIMEOUT_S, READ_MARGIN_S, Cursor, LongPollClient
from helpers.errors import PollError, ServerUnavailable
from servers.contract import STREAM_HEADER, Event


def _outcome(exc: Exception) -> str:
    cause = exc.__cause__
    if isinstance(cause, requests.ReadTimeout):
        return "read timeout"
    if isinstance(cause, requests.RequestException):
        return "connection error"
    if isinstance(exc, PollError):
        return str(exc.status)
    text = str(exc)
    return text[5:8] if text.startswith("HTTP ") else type(exc).__name__


class WatchedLongPollClient(LongPollClient):
    """A `LongPollClient` that notes how every poll ended, with a read timeout you choose.

    `outcomes` counts "200", "204", "504", "read timeout", "connection error", ... and
    `timeline` lists (seconds since start, outcome). `read_timeout` defaults to the kit's
    hold + 5 s; set it below the hold to watch the misconfiguration the lesson is about.
    """

    def __init__(self, url: str, hold: float = 30.0, *, read_timeout: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(url, hold, **kwargs)
        self.read_timeout = hold + READ_MARGIN_S if read_timeout is None else read_timeout
        if self.read_timeout <= 0:
            raise ValueError("read_timeout must be a positive number of seconds")
        self.outcomes: Counter[str] = Counter()
        self.timeline: list[tuple[float, str]] = []
        self._started = time.monotonic()

    def start(self) -> WatchedLongPollClient:
        self._started = time.monotonic()
        super().start()
        return self

    def request_timeout(self) -> tuple[float, float]:
        return (CONNECT_TIMEOUT_S, self.read_timeout)

    def poll_once(self) -> list[Event]:
        try:
            events = super().poll_once()
        except (ServerUnavailable, PollError) as exc:
            if not self.stopping:
                self._note(_outcome(exc))
            raise
        self._note("200" if events else "204")
        return events

    def _note(self, outcome: str) -> None:
        self.outcomes[outcome] += 1
        self.timeline.append((time.monotonic() - self._started, outcome))


class GatewayBlindClient(WatchedLongPollClient):
    """DELIBERATELY NAIVE, for one lesson: every answer but 200 or 204 is an error to back off.

    Behind a proxy whose read timeout is shorter than the hold, every quiet poll ends in the
    proxy's 504. This client counts each as an error and waits `backoff_base` s, doubling up to
    `backoff_cap` (the same schedule for every client, as many hand-written clients do), so the
    longer the quiet spell, the longer the next event waits for it to poll again. The kit's
    `LongPollClient` re-polls at once instead (`helpers.clients.gateway_ended_hold`).
    """

    gateways_end_holds = False

    def retry_delay(self, failures: int) -> float:
        return float(min(self.backoff_cap, self.backoff_base * 2 ** max(0, failures - 1)))


class _StreamBlindCursor(Cursor):
    def apply(self, status: int, headers: Any, payload: Any, received_at: float) -> list[Event]:
        blind = CaseInsensitiveDict({k: v for k, v in headers.items()
                                     if k.lower() != STREAM_HEADER.lower()})
        return super().apply(status, blind, payload, received_at)


class StreamBlindClient(LongPollClient):
    """DELIBERATELY NAIVE, for one lesson: a long-poll client that ignores `X-Stream-Id`.

    Like the article's client, it trusts its `last_event_id` forever. When a server with an
    in-memory log restarts, the new log's ids start again at 1, below this client's cursor, so
    it waits for ids it has "already seen": it stalls, and later skips the new events whose ids
    it had passed, without anything counting them as missing. Use `LongPollClient` instead.
    """

    def __init__(self, url: str, hold: float = 30.0, **kwargs: Any) -> None:
        super().__init__(url, hold, **kwargs)
        self.cursor = _StreamBlindCursor(self.cursor.name, self.metrics,
                                         self.cursor.last_event_id)
