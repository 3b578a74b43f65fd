"""TUNING, not the lesson: `--lean`'s held polls, answered by the publish itself (Nchan's way).

The wait that notebook 03 teaches (`wait_for_events`) holds each poll in a task, and a publish
wakes every task: each reads the log after its cursor and sends its answer through uvicorn's
request cycle. At 10,000 held polls that is 10,000 wake-ups, one after another, before the last
client hears of the event. Nchan holds a request as data instead (a connection and a cursor),
and its publish loops over them, writing the same bytes to each. `--lean` does that here:

* `ParkingLot.hold` parks a poll that found nothing new: its connection's `send` and its
  cursor, grouped with the other polls at the same cursor and limit. Its task sleeps on a
  future of its own, without a read, a wake-up or a send until it is answered.
* `ParkingLot.publish` runs on each publish (`log.on_wake`). For each group it reads the log
  once, encodes the answer once (`servers.answers`), and writes it whole to every connection
  in one loop (`send_whole`). Only then do the tasks wake, to finish with nothing left to send.
* A poll the lot does not answer (its hold ends, its client hangs up, the server stops, or
  `send_whole` declines) goes back to `wait_for_events` with a hold of 0, which reads the log
  once more and answers at once: 200, 204 or an error, exactly as the FastAPI handler would.

Only for a log in this process (memory or SQLite), whose reads answer without suspending; a
broker's polls wait in `wait_for_events`. The same ASGI extension carries the write:
`polling.lab.answer` (offered by `servers.uvicorn_guard.GuardedProtocol`) holds `send`, which
writes the status line, uvicorn's own default headers, the answer's headers and its body in one
write, and completes the request as uvicorn's `send` would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.types import Scope
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from servers import hangup
from servers.answers import EncodedEvents
from servers.contract import ApiError, PollParams, other_stream
from servers.eventlog import EventLog
from servers.stats import Stats
from servers.waiters import Waiters

#: The extension's name: its value holds `send`, a callable (scope, status, head, body) -> bool.
EXTENSION = "polling.lab.answer"
#: (scope, status code, the header lines after uvicorn's own, body) -> whether it was sent
SendWhole = Callable[[Scope, int, bytes, bytes], bool]
#: A parked poll: its future (True once answered) -> its connection's send and its scope.
Group = dict["asyncio.Future[bool | None]", tuple[SendWhole, Scope]]


class ParkingLot:
    """The held polls of `--lean`, grouped by (cursor, limit), answered by each publish."""

    def __init__(self, events: EventLog, answers: EncodedEvents, stats: Stats,
                 waiters: Waiters) -> None:
        self.events, self.answers, self.stats, self.waiters = events, answers, stats, waiters
        self._groups: dict[tuple[int, int], Group] = {}
        self._closed = False
        self.answered = 0  # polls answered by a publish's own write, for /stats

    async def hold(self, params: PollParams, scope: Scope, claimed: str | None) -> bool | None:
        """Park the poll. True once a publish has answered it; False when it was let go
        unanswered (the caller answers it at once, with a hold of 0); None when it was not
        parked (the caller waits as usual). See the module docstring."""
        send: SendWhole | None = scope.get("extensions", {}).get(EXTENSION, {}).get("send")
        watch = hangup.watch_of(scope)  # offered beside `send` by the same protocol
        if (send is None or watch is None or self._closed or params.timeout <= 0
                or other_stream(self.events.stream, claimed)):
            return None
        woken = self.waiters.next_publish()  # taken before the read, as wait_for_events does
        if await self.answers.after(params.last_event_id, params.limit) is not None:
            return None  # something new already: the usual path sends it
        if woken.done():
            return None  # a publish came during the read (none can, without a broker)
        self.stats.wait_started()  # or a 503, when as many polls as allowed are held
        loop = asyncio.get_running_loop()
        mine: asyncio.Future[bool | None] = loop.create_future()
        key = (params.last_event_id, params.limit)
        group = self._groups.setdefault(key, {})
        group[mine] = (send, scope)
        watch(mine)  # a hang-up resolves it with None
        timer = loop.call_later(params.timeout, _resolve, mine, False)
        try:
            return bool(await mine)
        finally:
            timer.cancel()
            watch(None)
            group.pop(mine, None)
            if not group and self._groups.get(key) is group:
                del self._groups[key]  # or an empty group could wait forever at a cursor
            self.stats.wait_ended()

    def publish(self) -> None:
        """Answer every parked poll that has something new: one read, one encoding and one
        loop of writes per group. Groups with nothing new after their cursor stay parked."""
        groups, self._groups = self._groups, {}
        for (cursor, limit), group in groups.items():
            if not group:
                continue
            try:
                found = self.events.since(cursor, limit)
            except ApiError:
                found = None  # (past retention) the usual path answers with the error
            if found == []:
                self._groups[(cursor, limit)] = group  # nothing after this cursor yet
                continue
            answer = self.answers.encoded(found) if found else None
            head = header_lines(answer.headers) if answer else b""
            for mine, (send, scope) in group.items():
                if not mine.done():
                    sent = answer is not None and _sent(send, scope, head, answer.body)
                    self.answered += sent
                    mine.set_result(sent)

    def describe(self) -> dict[str, int]:
        """What `/stats` adds: how many held polls a publish answered with its own write."""
        return {"answered_by_publish": self.answered}

    def release(self) -> None:
        """The server is stopping: every parked poll goes back to be answered (with a 204), and
        no poll is parked from now on."""
        self._closed = True
        groups, self._groups = self._groups, {}
        for group in groups.values():
            for mine in group:
                _resolve(mine, False)


def _sent(send: SendWhole, scope: Scope, head: bytes, body: bytes) -> bool:
    """One connection's write; one that fails is left to the usual path, so that the publish
    (a trigger's request) and every other parked poll go on."""
    try:
        return send(scope, 200, head, body)
    except Exception:  # noqa: BLE001 (a transport that broke under us: answered the usual way)
        return False


def _resolve(mine: asyncio.Future[bool | None], answered: bool) -> None:
    if not mine.done():
        mine.set_result(answered)


def header_lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    """Raw headers as the lines of an HTTP/1.1 head: `name: value\\r\\n` each."""
    return b"".join(b"%s: %s\r\n" % (name, value) for name, value in headers)


# --- the server's side: uvicorn's httptools protocol (servers.uvicorn_guard.GuardedProtocol) ---


def send_whole(protocol: Any, scope: Scope, status: int, head: bytes, body: bytes) -> bool:
    """Write the response whole on `protocol`'s connection, in one write, then complete the
    request as uvicorn's own `send` completes it (its event set, `on_response` called, so the
    keep-alive timer and the next request on the connection go on as usual).

    Declines (False, nothing sent) wherever uvicorn's `send` would do more than write these
    bytes: a request that is not the connection's current one, a response already started, a
    HEAD request, a connection that closes after it, writes paused by flow control, an access
    log to write, a client already gone. The transport is `servers.fast_path.OneWrite`.
    """
    cycle: Any = protocol.cycle
    transport: Any = protocol.transport
    if (cycle is None or cycle.scope is not scope or cycle.response_started
            or cycle.disconnected or not cycle.keep_alive or cycle.flow.write_paused
            or cycle.access_log or scope["method"] == "HEAD" or transport.is_closing()):
        return False
    cycle.response_started = cycle.response_complete = True
    cycle.waiting_for_100_continue = False
    defaults = _default_lines(protocol.server_state.default_headers)
    transport.write_whole(b"".join((STATUS_LINE[status], defaults, head, b"\r\n", body)))
    cycle.message_event.set()
    cycle.on_response()
    return True


#: uvicorn's default headers (Date, Server, X-Served-By) as head lines, with the list they were
#: encoded from: uvicorn makes a new list when the date changes, once a second.
_defaults: tuple[object, bytes] = (None, b"")


def _default_lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    global _defaults
    if _defaults[0] is not headers:
        _defaults = (headers, header_lines(headers))
    return _defaults[1]
