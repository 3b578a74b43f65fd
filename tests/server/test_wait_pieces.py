"""The asyncio server's waiting pieces on their own: `Waiters.wait`, `servers.hangup`, the
encoded answers, `servers.slim`'s smaller stand-ins for uvicorn's objects, and `--lean`'s
parking lot (`servers.parking`). The live tests in test_fastapi_server.py check them together
(a publish wakes every poll; a hang-up releases one; a parked poll's answer is uvicorn's own)."""

from __future__ import annotations

import asyncio
import collections
import json
from types import SimpleNamespace
from typing import Any

from servers import parking
from servers.answers import AnswerResponse, EncodedEvents
from servers.contract import PollParams
from servers.eventlog import EventLog
from servers.hangup import HangupWatch, client_gone
from servers.logs import LocalLog
from servers.slim import LazyEvent, Pipeline, slim_connection, slim_cycle
from servers.stats import Stats
from servers.waiters import Waiters


def test_wait_returns_on_the_publish_and_leaves_no_callback() -> None:
    async def main() -> None:
        waiters = Waiters()
        woken = waiters.next_publish()
        task = asyncio.ensure_future(waiters.wait(60, woken))
        await asyncio.sleep(0)
        assert not task.done()
        waiters.wake_all()
        await asyncio.wait_for(task, 5)
        assert woken.done() and waiters.next_publish() is not woken
    asyncio.run(main())


def test_wait_returns_when_another_future_is_done_or_the_time_is_up() -> None:
    async def main() -> None:
        waiters = Waiters()
        other: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(waiters.wait(60, None, other))
        await asyncio.sleep(0)
        other.set_result(None)
        await asyncio.wait_for(task, 5)
        await asyncio.wait_for(waiters.wait(0.01), 5)  # nothing published: the timeout ends it
        assert not waiters.next_publish().done()
    asyncio.run(main())


def test_client_gone_uses_the_servers_extension_without_a_task() -> None:
    async def main() -> None:
        watch = HangupWatch()

        async def never() -> dict[str, Any]:
            raise AssertionError("receive() must not be called when the extension is offered")

        gone = client_gone({"extensions": watch.extensions}, never)
        assert not isinstance(gone, asyncio.Task) and not gone.done()
        watch.hung_up()
        assert gone.done()
        watch.hung_up()  # a second close, or one with nothing watched, is harmless
    asyncio.run(main())


def test_client_gone_falls_back_to_http_disconnect() -> None:
    async def main() -> None:
        messages = [{"type": "http.request", "body": b"", "more_body": False},
                    {"type": "http.disconnect"}]

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        gone = client_gone({}, receive)
        await asyncio.wait_for(gone, 5)
        assert not messages
    asyncio.run(main())


def test_answers_are_encoded_once_until_a_wake_up() -> None:
    async def main() -> None:
        log = EventLog()
        answers = EncodedEvents(LocalLog(log))
        assert await answers.after(0, 100) is None
        log.publish("one")
        first = await answers.after(0, 100)
        assert first is not None and await answers.after(0, 100) is first
        assert dict(first.headers)[b"x-stream-id"] == log.stream.encode()
        assert dict(first.headers)[b"content-length"] == str(len(first.body)).encode()
        answers.forget()
        log.publish("two")
        second = await answers.after(0, 100)
        assert second is not None and second is not first and b"two" in second.body
        response = AnswerResponse(second)
        assert response.body == second.body and response.raw_headers == second.headers
        assert response.raw_headers is not second.headers  # a copy: the answer stays shared
        empty = AnswerResponse(None, 204, stream=answers.stream_header())
        assert empty.body == b"" and empty.raw_headers == [answers.stream_header()]
    asyncio.run(main())


def test_pipeline_list_is_first_in_first_out_like_uvicorns_deque() -> None:
    pipeline = Pipeline()
    assert not pipeline
    pipeline.appendleft("first")
    pipeline.appendleft("second")
    assert pipeline.pop() == "first" and pipeline.pop() == "second" and not pipeline


def test_lazy_event_wakes_every_waiter_as_asyncio_event_does() -> None:
    async def main() -> None:
        event = LazyEvent()
        assert not event.is_set() and event._waiters is None  # nothing made until a wait
        first, second = (asyncio.ensure_future(event.wait()) for _ in range(2))
        await asyncio.sleep(0)
        assert not first.done() and not second.done()
        event.set()
        assert await asyncio.wait_for(asyncio.gather(first, second), 5) == [True, True]
        assert event.is_set() and await event.wait() is True  # set: returns at once
        event.clear()
        third = asyncio.ensure_future(event.wait())
        await asyncio.sleep(0.01)
        assert not third.done()  # cleared: waits again
        third.cancel()
        await asyncio.gather(third, return_exceptions=True)
        assert not event._waiters  # a cancelled waiter leaves nothing behind
        event.set()
    asyncio.run(main())


def test_slim_swaps_only_the_objects_it_knows() -> None:
    async def main() -> None:
        writable = asyncio.Event()
        writable.set()
        protocol = SimpleNamespace(pipeline=collections.deque(),
                                   flow=SimpleNamespace(_is_writable_event=writable))
        slim_connection(protocol)
        assert isinstance(protocol.pipeline, Pipeline)
        assert isinstance(protocol.flow._is_writable_event, LazyEvent)
        assert protocol.flow._is_writable_event.is_set()  # its state is kept
        cycle = SimpleNamespace(message_event=asyncio.Event())
        slim_cycle(cycle)
        assert isinstance(cycle.message_event, LazyEvent)

        busy = SimpleNamespace(pipeline=collections.deque(["queued"]), flow=None)
        slim_connection(busy)  # a queue in use, and no flow control: left as they are
        assert list(busy.pipeline) == ["queued"] and busy.flow is None
        custom = SimpleNamespace(message_event="not an asyncio.Event")
        slim_cycle(custom)
        assert custom.message_event == "not an asyncio.Event"
    asyncio.run(main())


# --- servers.parking: --lean's held polls, answered by the publish ------------------------------


class Connection:
    """One connection as the lot sees it: the extensions its protocol offers, and what it
    wrote. `accept=False` declines every write, as `send_whole` does for a closing one."""

    def __init__(self, accept: bool = True) -> None:
        self.watch = HangupWatch()
        self.written: list[tuple[int, bytes, bytes]] = []
        self.accept = accept
        self.scope = {"type": "http", "method": "GET", "extensions": {
            **self.watch.extensions, parking.EXTENSION: {"send": self.send}}}

    def send(self, scope: object, status: int, head: bytes, body: bytes) -> bool:
        assert scope is self.scope
        if self.accept:
            self.written.append((status, head, body))
        return self.accept


def parking_lot() -> tuple[EventLog, parking.ParkingLot, Stats]:
    """A log, and a lot on it wired to its publishes as the lean server wires it."""
    log = EventLog()
    shared = LocalLog(log)
    answers, stats, waiters = EncodedEvents(shared), Stats("test", shared), Waiters()
    lot = parking.ParkingLot(log, answers, stats, waiters)
    for wake in (waiters.wake_all, answers.forget, lot.publish):
        shared.on_wake(wake)
    return log, lot, stats


def test_a_publish_writes_one_answer_to_every_parked_poll_at_its_cursor() -> None:
    async def main() -> None:
        log, lot, stats = parking_lot()
        log.publish("first")
        conns = [Connection() for _ in range(3)]
        ahead = Connection()
        held = [asyncio.ensure_future(lot.hold(PollParams(1, 100, 30), c.scope, None))
                for c in conns]
        later = asyncio.ensure_future(lot.hold(PollParams(5, 100, 30), ahead.scope, None))
        await asyncio.sleep(0)
        assert stats.waiting == 4 and not any(c.written for c in conns)
        event = log.publish("second")
        assert await asyncio.wait_for(asyncio.gather(*held), 5) == [True, True, True]
        body = json.dumps([event], separators=(",", ":")).encode()
        head = parking.header_lines(EncodedEvents(LocalLog(log)).encoded([event]).headers)
        assert [c.written for c in conns] == [[(200, head, body)]] * 3
        # a cursor ahead of the log has nothing new yet: it stays parked, until the server stops
        assert not later.done() and stats.waiting == 1 and lot.describe() == {
            "answered_by_publish": 3}
        lot.release()
        assert await asyncio.wait_for(later, 5) is False
        assert not ahead.written and stats.waiting == 0
        # and a poll that comes once the server is stopping is not parked: it gets its 204 at once
        assert await asyncio.wait_for(lot.hold(PollParams(5, 100, 30), Connection().scope,
                                               None), 5) is None
    asyncio.run(main())


def test_a_parked_poll_is_let_go_unanswered_by_its_hold_a_hang_up_or_a_refused_write() -> None:
    async def main() -> None:
        log, lot, stats = parking_lot()
        hold = PollParams(0, 100, 30)
        assert await asyncio.wait_for(lot.hold(PollParams(7, 100, 0.01), Connection().scope,
                                               None), 5) is False
        assert not lot._groups  # a cursor that no publish reached leaves nothing behind
        leaving, refusing, broken, fine = (Connection(), Connection(accept=False), Connection(),
                                           Connection())

        def breaks(*_: object) -> bool:
            raise RuntimeError("the transport broke under the write")

        broken.scope["extensions"][parking.EXTENSION] = {"send": breaks}
        gone, refused, failed, answered = (asyncio.ensure_future(lot.hold(hold, c.scope, None))
                                           for c in (leaving, refusing, broken, fine))
        await asyncio.sleep(0)
        leaving.watch.hung_up()
        assert await asyncio.wait_for(gone, 5) is False and stats.waiting == 3
        log.publish("not for all of them")  # a write that fails stops neither it nor the others
        assert await asyncio.wait_for(asyncio.gather(refused, failed, answered), 5) == [
            False, False, True]
        assert stats.waiting == 0 and lot.describe() == {"answered_by_publish": 1}
    asyncio.run(main())


def test_polls_the_lot_does_not_park_wait_as_usual() -> None:
    async def main() -> None:
        log, lot, stats = parking_lot()
        hold = PollParams(0, 100, 30)
        assert await lot.hold(hold, {"type": "http"}, None) is None  # no such server
        assert await lot.hold(PollParams(0, 100, 0), Connection().scope, None) is None
        assert await lot.hold(hold, Connection().scope, "another-stream") is None
        log.publish("ready")
        assert await lot.hold(hold, Connection().scope, None) is None  # answered at once
        assert stats.peak_waiting == 0
    asyncio.run(main())
