"""The asyncio server's poll answers, encoded once per publish for every waiter at the same cursor.

When one publish wakes 10,000 held polls, most of them sit at the same cursor and get the very
same answer. `EncodedEvents` reads the log and encodes that answer (its JSON body, and the
headers that go with it) once, and every waiter at that cursor sends the same bytes.
`AnswerResponse` is the FastAPI response class that sends them as they are; the lean poll
(`servers.fast_path`) sends the same `Answer` in raw ASGI. A publish clears the cache.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from fastapi import Response

from servers.contract import STREAM_HEADER, Event
from servers.logs import SharedLog

Headers = list[tuple[bytes, bytes]]
STREAM_KEY = STREAM_HEADER.lower().encode()
JSON_TYPE = (b"content-type", b"application/json")


@dataclass(frozen=True)
class Answer:
    """A poll's encoded answer: the JSON body, and its headers as ASGI sends them (raw bytes)."""

    body: bytes
    headers: Headers


class EncodedEvents:
    """The encoded events after a cursor, shared by every waiter at that cursor until a wake-up.

    `forget` must run on every wake-up (`log.on_wake`), before the woken waiters read again.
    """

    def __init__(self, log: SharedLog) -> None:
        self.log = log
        self._answers: dict[tuple[int, int], Answer] = {}
        self._wakes = 0  # wake-ups so far: a read that spans one must not fill the cache
        self._stream = ("", (STREAM_KEY, b""))

    def forget(self) -> None:
        self._answers.clear()
        self._wakes += 1

    def stream_header(self) -> tuple[bytes, bytes]:
        """`X-Stream-Id` as a raw header, encoded again only when the log's stream changes."""
        stream = self.log.stream
        if stream != self._stream[0]:
            self._stream = (stream, (STREAM_KEY, stream.encode()))
        return self._stream[1]

    def encode(self, body: bytes) -> Answer:
        """A JSON body with its `X-Stream-Id`, `Content-Type` and `Content-Length`."""
        return Answer(body, [self.stream_header(), JSON_TYPE,
                             (b"content-length", str(len(body)).encode())])

    def encoded(self, events: list[Event]) -> Answer:
        """The answer that carries `events` (not cached: `after` keeps what it encodes)."""
        return self.encode(json.dumps(events, separators=(",", ":")).encode())

    async def after(self, last_event_id: int, limit: int) -> Answer | None:
        """The answer with the events after `last_event_id` (at most `limit`); None if none.

        Raises what `SharedLog.since` raises (410 past retention; 503 for a broker that is down).
        """
        key = (last_event_id, limit)
        answer = self._answers.get(key)
        if answer is None:
            before = self._wakes
            found = await self.log.since(last_event_id, limit)
            if not found:
                return None
            answer = self.encoded(found)
            if self._wakes == before:
                self._answers[key] = answer
        return answer


class AnswerResponse(Response):
    """A response class for an `Answer`: its body and headers go out as they were encoded.

    Starlette's `Response.__init__` would build the header list again for each of the 10,000
    waiters; this one copies the list it is given. `AnswerResponse(None, 204, stream=...)` is
    an empty answer that carries only the stream header.
    """

    media_type = "application/json"

    def __init__(self, answer: Answer | None, status_code: int = 200, *,
                 stream: tuple[bytes, bytes] | None = None) -> None:
        self.status_code = status_code
        self.background = None
        self.body = answer.body if answer is not None else b""
        self.raw_headers = list(answer.headers) if answer is not None else [
            *([stream] if stream is not None else [])]
