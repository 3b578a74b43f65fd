"""servers/idempotency.py: what was published under each Idempotency-Key, for a while."""

from __future__ import annotations

import threading
import time

import pytest

from servers.contract import ApiError, Event
from servers.eventlog import EventLog
from servers.idempotency import MAX_KEY_CHARS, RecentPublishes, check_key


def test_a_repeated_key_answers_the_first_event_and_publishes_once() -> None:
    log, recent = EventLog(), RecentPublishes()
    first, replayed = recent.publish("k1", "hello", log.publish)
    assert replayed is False and first["id"] == 1
    again, replayed = recent.publish("k1", "hello", log.publish)
    assert replayed is True and again == first
    other, replayed = recent.publish("k2", "hello", log.publish)
    assert replayed is False and other["id"] == 2
    assert log.last_id == 2 and recent.replays == 1


def test_without_a_key_every_publish_publishes() -> None:
    log, recent = EventLog(), RecentPublishes()
    for _ in range(3):
        assert recent.publish(None, "m", log.publish)[1] is False
    assert log.last_id == 3


def test_a_key_reused_for_another_message_is_422() -> None:
    log, recent = EventLog(), RecentPublishes()
    recent.publish("k", "one", log.publish)
    with pytest.raises(ApiError) as refused:
        recent.publish("k", "two", log.publish)
    assert (refused.value.status, refused.value.code) == (422, "idempotency_key_reused")
    assert log.last_id == 1


@pytest.mark.parametrize("key", ["", " ", "a b", "é", "x" * (MAX_KEY_CHARS + 1), "tab\t"])
def test_a_malformed_key_is_400(key: str) -> None:
    with pytest.raises(ApiError) as refused:
        check_key(key)
    assert (refused.value.status, refused.value.code) == (400, "bad_idempotency_key")
    assert check_key("x" * MAX_KEY_CHARS)


def test_keys_are_forgotten_after_the_window_and_beyond_max_keys() -> None:
    log = EventLog()
    recent = RecentPublishes(window_s=0.05)
    recent.publish("k", "m", log.publish)
    time.sleep(0.1)
    assert recent.publish("k", "m", log.publish)[1] is False  # a new publish
    few = RecentPublishes(max_keys=3)
    for key in "abcd":
        few.publish(key, "m", log.publish)
    assert few.publish("a", "m", log.publish)[1] is False  # the oldest key went first
    assert few.publish("d", "m", log.publish)[1] is True


def test_racing_requests_with_one_key_publish_once() -> None:
    log, recent = EventLog(), RecentPublishes()
    events: list[Event] = []

    def slow_publish(message: str) -> Event:
        time.sleep(0.01)  # widen the window a check-then-publish race would need
        return log.publish(message)

    def retry() -> None:
        events.append(recent.publish("same", "m", slow_publish)[0])

    threads = [threading.Thread(target=retry) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert log.last_id == 1 and {e["id"] for e in events} == {1}


def test_the_window_and_size_must_make_sense() -> None:
    with pytest.raises(ValueError):
        RecentPublishes(window_s=0)
    with pytest.raises(ValueError):
        RecentPublishes(max_keys=0)
