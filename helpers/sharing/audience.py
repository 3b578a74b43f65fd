"""A crowd of the kit's long-poll clients, and publishes whose every message is accounted for.

    with Audience(cluster.url, 30) as audience:
        sent = publish(cluster.url, 20)
        audience.wait_for(sent, timeout=5)
    audience.tally(sent)   # lost, duplicates, stream resets, counted per client and message

Counting is by message text ("event 7"), because ids cannot be trusted in this lesson: three
servers with their own logs give three different events the id 7.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType

from helpers.clients import LongPollClient
from helpers.errors import PollingLabError
from helpers.http import request, session_for
from helpers.metrics import Metrics, percentile
from helpers.sharing.results import Tally
from servers.contract import Event

SERVED_BY = "X-Served-By"


@dataclass(frozen=True)
class Publish:
    """One confirmed publish: its message, the event the server made of it, who served it."""

    message: str
    id: int
    timestamp: float
    served_by: str


@dataclass(frozen=True)
class Received:
    """One message arriving at one client."""

    message: str
    received_at: float  # time.time() when the client read it
    latency_s: float  # received_at minus the event's own timestamp


class Publishing:
    """Publishes through one URL (a gateway or a server), numbered from `first`."""

    def __init__(self, url: str, *, token: str | None = None, prefix: str = "event",
                 first: int = 1, client_id: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        if client_id:  # a gateway's rate limit counts per X-Client-Id, else per address
            self.headers["X-Client-Id"] = client_id
        self.prefix = prefix
        self.next = first
        self.sent: list[Publish] = []
        self.failed = 0  # publishes that got no confirmation: not retried, not counted as sent
        self._session = session_for(url)
        self._lock = threading.Lock()

    def one(self) -> Publish | None:
        """Publish the next message; None (counted in `failed`) if no server confirmed it.

        Not retried: a retry through a gateway may land on another server, where the
        Idempotency-Key of the first try means nothing, and publish the message twice.
        """
        with self._lock:
            message = f"{self.prefix} {self.next}"
            self.next += 1
            try:
                response = request("POST", self.url + "/trigger_event", session=self._session,
                                   json={"message": message}, headers=self.headers)
            except PollingLabError:
                self.failed += 1
                return None
            event = response.json()["event"]
            sent = Publish(message, int(event["id"]), float(event["timestamp"]),
                           response.headers.get(SERVED_BY, "?"))
            self.sent.append(sent)
            return sent

    def many(self, count: int, gap_s: float = 0.0) -> list[Publish]:
        """Publish `count` messages, `gap_s` seconds apart; returns those confirmed."""
        done: list[Publish] = []
        for i in range(count):
            if i and gap_s:
                time.sleep(gap_s)
            sent = self.one()
            if sent is not None:
                done.append(sent)
        return done

    def close(self) -> None:
        self._session.close()


def publish(url: str, count: int, *, gap_s: float = 0.05, token: str | None = None,
            prefix: str = "event") -> list[Publish]:
    """Publish `count` messages "event 1", "event 2", ... through `url`; return the confirmed."""
    publishing = Publishing(url, token=token, prefix=prefix)
    try:
        return publishing.many(count, gap_s)
    finally:
        publishing.close()


def count_client(published: Iterable[str], received: Iterable[str]) -> tuple[int, int]:
    """(lost, duplicates) for one client: published messages it never received, and
    deliveries of a published message it had received already. Others are ignored."""
    wanted = set(published)
    counts = Counter(m for m in received if m in wanted)
    return len(wanted - counts.keys()), sum(n - 1 for n in counts.values())


class Audience:
    """`n` `LongPollClient`s (threads) on `url`, each remembering every message it received."""

    def __init__(self, url: str, n: int, *, hold: float = 10.0, name: str = "client",
                 backoff_cap: float = 1.0, last_event_id: int = 0) -> None:
        self.url = url
        self.metrics = Metrics()
        self.names = [f"{name}-{i}" for i in range(n)]
        self.received: dict[str, list[Received]] = {c: [] for c in self.names}
        self._lock = threading.Lock()
        self.clients = [LongPollClient(url, hold=hold, metrics=self.metrics, name=c,
                                       backoff_cap=backoff_cap, last_event_id=last_event_id,
                                       on_events=self._recorder(c))
                        for c in self.names]

    def _recorder(self, client: str) -> Callable[[Sequence[Event]], None]:
        def record(events: Sequence[Event]) -> None:
            now = time.time()
            with self._lock:
                self.received[client].extend(
                    Received(str(e["message"]), now, now - float(e["timestamp"])) for e in events)
        return record

    def start(self) -> Audience:
        for client in self.clients:
            client.start()
        return self

    def stop(self) -> None:
        for client in self.clients:
            client.stop(timeout=0.2)
        for client in self.clients:
            client.stop()

    def __enter__(self) -> Audience:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def messages(self, client: str) -> list[str]:
        """The messages `client` received, in order, repeats included."""
        with self._lock:
            return [r.message for r in self.received[client]]

    def has_all(self, sent: Iterable[Publish]) -> bool:
        """True once every client has received every message of `sent`."""
        wanted = {p.message for p in sent}
        return all(wanted <= set(self.messages(c)) for c in self.names)

    def wait_for(self, sent: Sequence[Publish], timeout: float) -> float:
        """Wait until every client has every message of `sent`, or `timeout` seconds passed.

        Returns the seconds waited (the full `timeout` if some client is still missing one).
        """
        started = time.monotonic()
        while not self.has_all(sent) and time.monotonic() - started < timeout:
            time.sleep(0.02)
        return time.monotonic() - started

    def tally(self, sent: Sequence[Publish]) -> Tally:
        """Lost and duplicated messages of `sent`, per client, summed (see `Tally`)."""
        wanted = [p.message for p in sent]
        lost = duplicates = complete = 0
        for client in self.names:
            missing, repeated = count_client(wanted, self.messages(client))
            lost += missing
            duplicates += repeated
            complete += missing == repeated == 0
        summary = self.metrics.summary()
        return Tally(clients=len(self.names), published=len(set(wanted)), lost=lost,
                     duplicates=duplicates, complete=complete,
                     stream_resets=summary["stream_resets"], requests=summary["requests"],
                     errors=summary["errors"], gateway_ended=summary["gateway_timeouts"],
                     by_server=dict(Counter(p.served_by for p in sent)))

    def fanout_ms(self, sent: Sequence[Publish]) -> list[float]:
        """Per message of `sent`: the last client's receive time minus its timestamp, in ms.

        A message some client never received is left out (its fan-out never ended).
        """
        last: dict[str, float] = {}
        seen: Counter[str] = Counter()
        with self._lock:
            for rows in self.received.values():
                for message in {r.message for r in rows}:
                    seen[message] += 1
                for r in rows:
                    last[r.message] = max(last.get(r.message, 0.0), r.received_at)
        return sorted(1000 * (last[p.message] - p.timestamp) for p in sent
                      if seen[p.message] == len(self.names))

    def latencies_ms(self, sent: Sequence[Publish]) -> list[float]:
        """Every first delivery of a message of `sent`, receive time minus timestamp, sorted."""
        wanted = {p.message for p in sent}
        with self._lock:
            values = []
            for rows in self.received.values():
                first: dict[str, float] = {}
                for r in rows:
                    first.setdefault(r.message, r.latency_s)
                values += [1000 * v for m, v in first.items() if m in wanted]
        return sorted(values)


def median(values: Sequence[float]) -> float:
    """The median of sorted `values`, NaN for none."""
    return percentile(values, 50) if values else math.nan
