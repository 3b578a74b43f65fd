"""The fault lesson's Publisher retries a publish a stalled server did not answer, and it still
publishes each message once (issue 15): its retries carry one `Idempotency-Key` per publish.

A real server is paused (SIGSTOP) twice while the Publisher runs; each time, the publish in
flight times out, its retry waits in the kernel's queue, and on resume the server answers both
with one event.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from helpers import Server
from helpers.faults import Publisher
from helpers.http import request

TOTAL = 30
TRY_TIMEOUT_S = 0.6  # each try's timeout: a pause longer than this is a stall to retry
PAUSE_S = 0.9  # the first try times out, its retry is sent and waits; well below 3 tries


def test_a_publisher_through_stalls_publishes_each_message_once(
        launched: Callable[..., Server]) -> None:
    server = launched("asyncio", hold=5)
    with Publisher(server, rate=40, total=TOTAL, timeout=TRY_TIMEOUT_S) as publisher:
        for _ in range(2):
            time.sleep(0.15)  # a few publishes go through, then one is caught by the pause
            server.pause()
            try:
                time.sleep(PAUSE_S)
            finally:
                server.resume()
        assert publisher.done.wait(10), (publisher.published, publisher.failed)
    events = request("GET", server.url + "/events").json()
    ids = [event["id"] for event in events]
    messages = [event["message"] for event in events]
    assert ids == list(range(1, len(ids) + 1)), ids
    assert len(set(messages)) == len(messages), messages  # no message published twice
    assert messages == [f"event {i}" for i in range(1, len(ids) + 1)], messages
    assert publisher.failed == 0 and publisher.last_id == len(ids) >= TOTAL
    stats = server.stats()
    # The pauses did catch publishes in flight: their retries were answered as replays.
    assert stats["replayed_publishes"] >= 1, stats
    assert stats["events_published"] == len(ids)
