"""Notebook 07's exercise: read an SSE stream by the WHATWG rules, checked against the kit's."""

from __future__ import annotations

from collections.abc import Callable

from helpers.exercises import check
from helpers.sse import SSEParser

#: Streams that each exercise one rule, with what the rule is.
SAMPLES = [
    ("data: hello\n\n", "one data line, then a blank line"),
    ("data: first line\ndata: second line\n\n", "multi-line data is joined with a newline"),
    (": keep-alive\n\ndata: x\n\n", "a line starting with ':' is a comment"),
    ('id: 7\ndata: {"id":7}\n\n', "the id line is not part of the data"),
    ("data:no space\n\n", "the space after the colon is optional"),
    ("data:  two spaces\n\n", "only one leading space is removed"),
    ("data: never finished\n", "a message the stream ends in the middle of is not dispatched"),
    ("data: one\r\n\r\ndata: two\r\r", "CRLF and a lone CR end lines too"),
    ("retry: 1000\n\nevent: gone\ndata: {}\n\n", "retry and event lines are not data"),
]


def expected(text: str) -> list[str]:
    return [message.data for message in SSEParser().feed(text.encode())]


def check_parser(my_messages: Callable[[str], list[str]]) -> bool:
    """Run `my_messages(text)` on each sample; passed when every answer matches the standard's.

    Never raises: a sample that fails (or raises) is named in the hint with its rule.
    """
    for text, rule in SAMPLES:
        want = expected(text)
        try:
            got = list(my_messages(text))
        except Exception as exc:  # noqa: BLE001 - the learner's code: report, don't raise
            got = [f"{type(exc).__name__}: {exc}"]
        if got != want:
            return check(False, success="", hint=f"for {text!r} ({rule}) the answer is "
                         f"{want!r}; yours was {got!r}.")
    return check(True, success=f"All {len(SAMPLES)} streams read as a browser reads them: "
                 "the same rules helpers/sse.py follows.", hint="")
