"""Reading `text/event-stream`, per the WHATWG HTML standard's "Server-sent events" section.

A small parser of our own rather than a library: the kit reads SSE from a plain `http.client`
connection in a thread (so `stop()` can cut it), and the rules fit on a screen. Fed bytes in
pieces of any size, it dispatches exactly what a browser's `EventSource` would:

- lines end in CRLF, LF or CR, even when a CR and its LF arrive in different pieces;
- `data:` lines accumulate, joined by newlines (multi-line data); a blank line dispatches;
- `id:` sets the last event id, which persists across messages until another `id:` (an id
  containing NULL is ignored); it is what a client resumes from;
- `retry:` sets the reconnection time only when its value is all ASCII digits;
- a line starting with `:` is a comment (a keep-alive); other unknown fields are ignored;
- one leading space after the colon is removed; a leading byte order mark is skipped;
- an event that the stream ends in the middle of is never dispatched.

tests/streams/test_sse_parser.py checks each rule.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched message: its type (`message` unless `event:` said), data and last id."""

    event: str
    data: str
    last_event_id: str


class SSEParser:
    """Incremental parser: `feed(chunk)` returns the messages that chunk completed.

    After any feed, `last_event_id` is the id to resume from, `retry_ms` the reconnection time
    the server asked for (None until it asks) and `comments` how many comment lines were seen.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""  # undecoded text that has not yet made a whole line
        self._started = False  # a byte order mark is only skipped at the very start
        self._after_cr = False  # the last piece ended in CR: an LF first in the next is its pair
        self._data: list[str] = []
        self._event = ""
        self._id_buffer = ""
        self.last_event_id = ""
        self.retry_ms: int | None = None
        self.comments = 0

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        text = self._decoder.decode(chunk)
        if text and not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")
        if text and self._after_cr:
            self._after_cr = False
            text = text.removeprefix("\n")  # the LF of a CRLF split across two pieces
        buffer, start, messages = self._text + text, 0, []
        for index, char in enumerate(buffer):
            if char == "\n" and index > 0 and buffer[index - 1] == "\r":
                start = index + 1  # the second half of a CRLF: that line has ended already
            elif char in "\r\n":
                message = self._line(buffer[start:index])
                if message is not None:
                    messages.append(message)
                start = index + 1
        self._text = buffer[start:]
        self._after_cr = buffer.endswith("\r")
        return messages

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self._id_buffer = value
        elif field == "retry":
            if value and all("0" <= c <= "9" for c in value):
                self.retry_ms = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        self.last_event_id = self._id_buffer
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return ServerSentEvent(event or "message", "\n".join(data), self.last_event_id)
