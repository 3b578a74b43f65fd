"""Events that keep flowing while you break things, and the check afterwards that none was lost.

    with Publisher(server, rate=20, total=500) as publisher:
        ...                                   # break things
    delivery_report(swarm.metrics, publisher.last_id, clients)
"""

from __future__ import annotations

import functools
import random
import threading
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from types import TracebackType
from typing import Any

import requests

from helpers.errors import PollingLabError
from helpers.http import DEFAULT_TIMEOUT_S, publish_with_retries, request, session_for
from helpers.launcher import Server
from helpers.metrics import Metrics


class Publisher:
    """Publish events on `server` at random intervals (about `rate` per second) in a thread.

    A publish that gets no answer within `timeout` s (the server is restarting or stalled) is
    retried, 3 tries in all, with one `Idempotency-Key` (`helpers.http.publish_with_retries`),
    so a retry of a publish the server did receive answers the same event instead of publishing
    it twice; one that still fails is counted in `failed`. Each publish has its own message
    ("event 1", "event 2", ...), so a message seen twice is a duplicate.
    `last_id` is the highest id the server has confirmed.
    """

    def __init__(self, server: Server, rate: float = 20.0, *, total: int | None = None,
                 rng: random.Random | None = None,
                 on_publish: Callable[[], None] | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S) -> None:
        if rate <= 0:
            raise ValueError("rate must be a positive number of events per second")
        self.server = server
        self.rate = rate
        self.total = total
        self.published = 0
        self.failed = 0
        self.timeout = timeout  # per try: a stalled server is retried after this
        self.last_id = 0
        self.done = threading.Event()  # set when `total` events have been confirmed
        self._rng = rng or random.Random()
        self._on_publish = on_publish  # called after each confirmed publish, in its thread
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._session = session_for(server.url)

    def start(self) -> Publisher:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._session.close()

    def _run(self) -> None:
        while not self._stop.wait(self._rng.expovariate(self.rate)):
            if self.total is not None and self.last_id >= self.total:
                self.done.set()
                return
            message = {"message": f"event {self.published + self.failed + 1}"}
            try:
                response = publish_with_retries(
                    functools.partial(self._send, message), base_delay=0.1)
            except PollingLabError:
                self.failed += 1
                continue
            self.published += 1
            self.last_id = max(self.last_id, int(response.json()["event"]["id"]))
            if self._on_publish is not None:
                self._on_publish()

    def _send(self, message: dict[str, str], headers: dict[str, str]) -> requests.Response:
        """One try of one publish; `headers` carry its Idempotency-Key, the same on every try."""
        return request("POST", self.server.url + "/trigger_event", session=self._session,
                       timeout=self.timeout, json=message, headers=headers)

    def __enter__(self) -> Publisher:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def ids_by_client(metrics: Metrics) -> dict[Hashable, list[int]]:
    """Every event id each client received, in the order received."""
    received: dict[Hashable, list[int]] = defaultdict(list)
    for delivery in list(metrics.deliveries):
        received[delivery.client].append(delivery.event_id)
    return received


def delivery_report(metrics: Metrics, last_id: int, clients: Sequence[Hashable] = ()
                    ) -> dict[str, Any]:
    """Did every client get every id from 1 to `last_id` exactly once, in order?

    `clients` lists the clients to check (those that received nothing count too). Returns
    `complete` (clients with exactly 1..last_id), `incomplete` (names of the others) and the
    recorder's own counters: duplicates, missing, gaps_reported, stream_resets, errors.
    """
    received = ids_by_client(metrics)
    names = list(clients) or list(received)
    expected = list(range(1, last_id + 1))
    incomplete = [name for name in names if received.get(name, []) != expected]
    summary = metrics.summary()
    return {
        "clients": len(names),
        "complete": len(names) - len(incomplete),
        "incomplete": incomplete,
        "last_id": last_id,
        **{key: summary[key] for key in ("duplicates", "missing", "gaps_reported",
                                         "stream_resets", "errors")},
    }
