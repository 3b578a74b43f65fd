"""One recorder that every client writes to, so every strategy is measured the same way.

Latency is the receive time minus the event's own `timestamp` (the server's clock when it was
published). Client and server run on one machine here, so both read the same clock.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from servers.contract import Event


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of already sorted values, by linear interpolation."""
    if not sorted_values:
        return math.nan
    position = (len(sorted_values) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


@dataclass(frozen=True)
class Delivery:
    """One event arriving at one client."""

    client: Hashable
    event_id: int
    received_at: float  # time.time() when the response was read
    latency_s: float  # received_at - event timestamp


class Metrics:
    """Counts requests and deliveries, and detects duplicate and missing event ids per client.

    Thread-safe: threaded clients, a swarm's event loop and a panel's timer share one recorder.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget everything recorded so far (the clients' cursors are not touched)."""
        with self._lock:
            self.started = time.time()
            self.requests = 0
            self.empty_responses = 0
            self.errors = 0
            self.gateway_timeouts = 0  # 502/504 from a proxy that ended a hold: empty polls
            self.rate_limited = 0  # 429 from a gateway: waited out, not an error
            self.last_error: str | None = None
            self.duplicates = 0
            self.missing = 0
            self.gaps_reported = 0  # events a 410 told us we had lost
            self.stream_resets = 0
            self.deliveries: list[Delivery] = []
            self._last_seen: dict[Hashable, int] = {}

    # --- what clients call ----------------------------------------------------------------

    def count_request(self) -> None:
        with self._lock:
            self.requests += 1

    def count_empty(self) -> None:
        with self._lock:
            self.empty_responses += 1

    def count_gateway_timeout(self) -> None:
        """A proxy ended a hold with 502/504: an empty poll (counted there too), not an error."""
        with self._lock:
            self.gateway_timeouts += 1
            self.empty_responses += 1

    def count_rate_limited(self) -> None:
        """A gateway answered 429: the client waits Retry-After; not an error, no backoff."""
        with self._lock:
            self.rate_limited += 1

    def record_error(self, message: str) -> None:
        with self._lock:
            self.errors += 1
            self.last_error = message

    def record_events(self, client: Hashable, events: Sequence[Event], received_at: float) -> None:
        """Record a response's events; ids must arrive once each, in order, with no hole."""
        with self._lock:
            last = self._last_seen.get(client)
            for event in events:
                event_id = event["id"]
                if last is not None and event_id <= last:
                    self.duplicates += 1
                    continue
                if last is not None and event_id > last + 1:
                    self.missing += event_id - last - 1
                last = event_id
                self.deliveries.append(
                    Delivery(client, event_id, received_at, received_at - event["timestamp"])
                )
            if last is not None:
                self._last_seen[client] = last

    def start_client(self, client: Hashable, last_event_id: int) -> None:
        """Tell the recorder where a client's cursor starts, so a first hole counts as missing."""
        with self._lock:
            self._last_seen[client] = last_event_id

    def record_gap(self, client: Hashable, resume_after: int) -> None:
        """A 410 said events up to `resume_after` are gone; count them as a reported gap."""
        with self._lock:
            last = self._last_seen.get(client, 0)
            self.gaps_reported += max(0, resume_after - last)
            self._last_seen[client] = resume_after

    def record_stream_reset(self, client: Hashable) -> None:
        """The server's stream changed (it restarted): ids start again from 1."""
        with self._lock:
            self.stream_resets += 1
            self._last_seen[client] = 0

    # --- what notebooks read --------------------------------------------------------------

    def latencies_ms(self, since: float = 0.0) -> list[tuple[float, float]]:
        """(received_at, latency in ms) for each delivery received after `since`."""
        with self._lock:
            return [(d.received_at, d.latency_s * 1000) for d in self.deliveries
                    if d.received_at >= since]

    def summary(self) -> dict[str, Any]:
        """Counters plus latency percentiles in ms; `requests_per_event` is per delivery."""
        with self._lock:
            latencies = sorted(d.latency_s * 1000 for d in self.deliveries)
            delivered = len(latencies)
            elapsed = max(time.time() - self.started, 1e-9)
            return {
                "requests": self.requests,
                "empty_responses": self.empty_responses,
                "empty_pct": 100 * self.empty_responses / self.requests if self.requests else 0.0,
                "events": delivered,
                "requests_per_event": self.requests / delivered if delivered else math.inf,
                "requests_per_s": self.requests / elapsed,
                "duplicates": self.duplicates,
                "missing": self.missing,
                "gaps_reported": self.gaps_reported,
                "stream_resets": self.stream_resets,
                "errors": self.errors,
                "gateway_timeouts": self.gateway_timeouts,
                "rate_limited": self.rate_limited,
                "last_error": self.last_error,
                "latency_ms_mean": sum(latencies) / delivered if delivered else math.nan,
                "latency_ms_p50": percentile(latencies, 50),
                "latency_ms_p95": percentile(latencies, 95),
                "latency_ms_p99": percentile(latencies, 99),
                "latency_ms_max": latencies[-1] if latencies else math.nan,
                "elapsed_s": elapsed,
            }
