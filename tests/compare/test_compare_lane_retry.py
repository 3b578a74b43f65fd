"""A lane's publisher retries a trigger its stalled server did not answer, and publishes it once:
every try of one publish carries the same `Idempotency-Key` (issue 15).

The lane's server is paused (SIGSTOP) while a trigger is in flight, with the lane's publish
timeout shortened so that the first try gives up during the pause; on resume the server answers
the first try and the retry with one event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from helpers import Server
from helpers.compare import LANES
from helpers.compare import lane as lane_module
from helpers.compare.fanout import Job
from helpers.http import request


def test_a_lane_publish_retried_after_a_stall_publishes_once(
        launched: Callable[..., Server], waiter: Callable[..., None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lane_module, "PUBLISH_TIMEOUT_S", 0.6)  # read when the lane starts
    server = launched("asyncio", hold=5)
    published: list[dict[str, Any]] = []
    lane = lane_module.Lane(LANES["asyncio"], server, lambda _, __, event: published.append(event))
    try:
        server.pause()
        try:
            lane.submit(Job(1, time.time(), "once", lane.epoch, lane.generation))
            time.sleep(0.9)  # the first try timed out; the retry waits in the kernel's queue
        finally:
            server.resume()
        waiter(lambda: lane.published == 1 or lane.publish_errors > 0, 10, "the lane's publish")
    finally:
        lane.close()
    assert (lane.published, lane.publish_errors) == (1, 0), lane.last_publish_error
    events = request("GET", server.url + "/events").json()
    assert [event["message"] for event in events] == ["once"], events
    assert published[0]["id"] == events[0]["id"]
    assert server.stats()["replayed_publishes"] == 1
