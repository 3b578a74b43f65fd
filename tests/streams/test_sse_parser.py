"""helpers.sse.SSEParser against the WHATWG "Server-sent events" parsing rules, one rule a test.

The examples follow the standard's own ("Parsing an event stream", "Interpreting an event
stream"); the last test feeds the same streams cut into random pieces and expects the same result.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.sse import ServerSentEvent, SSEParser


def parse(stream: bytes) -> tuple[list[ServerSentEvent], SSEParser]:
    parser = SSEParser()
    return parser.feed(stream), parser


def test_multi_line_data_is_joined_with_newlines() -> None:
    events, _ = parse(b"data: YHOO\ndata: +2\ndata: 10\n\n")
    assert events == [ServerSentEvent("message", "YHOO\n+2\n10", "")]


def test_a_blank_line_dispatches_and_data_without_one_is_never_dispatched() -> None:
    events, _ = parse(b"data: first\n\ndata: never finished\n")
    assert [e.data for e in events] == ["first"]


def test_the_last_event_id_persists_until_another_id() -> None:
    events, parser = parse(b"id: 7\ndata: a\n\ndata: b\n\nid: 9\ndata: c\n\n")
    assert [(e.data, e.last_event_id) for e in events] == [("a", "7"), ("b", "7"), ("c", "9")]
    assert parser.last_event_id == "9"


def test_an_id_without_data_still_moves_the_resume_point() -> None:
    events, parser = parse(b"id: 12\n\n")
    assert events == [] and parser.last_event_id == "12"


def test_an_empty_id_resets_it_and_an_id_with_null_is_ignored() -> None:
    _, parser = parse(b"id: 3\ndata: a\n\nid\ndata: b\n\n")
    assert parser.last_event_id == ""
    _, parser = parse(b"id: 3\ndata: a\n\nid: 4\x005\ndata: b\n\n")
    assert parser.last_event_id == "3"


def test_retry_is_used_only_when_all_ascii_digits() -> None:
    for value, expected in [(b"1500", 1500), (b"0", 0), (b"15x", None), (b"-1", None),
                            (b" 1500", None), (b"1.5", None), (b"", None),
                            ("١٢".encode(), None)]:  # Arabic-Indic digits are not ASCII digits
        _, parser = parse(b"retry: " + value + b"\n\n")
        assert parser.retry_ms == expected, value


def test_comments_are_counted_and_never_dispatched() -> None:
    events, parser = parse(b": keep-alive\n\n:\n: another\ndata: x\n\n")
    assert parser.comments == 3
    assert [e.data for e in events] == ["x"]


def test_event_type_applies_to_one_message_only() -> None:
    events, _ = parse(b"event: gone\ndata: {}\n\ndata: next\n\n")
    assert [(e.event, e.data) for e in events] == [("gone", "{}"), ("message", "next")]


def test_only_one_leading_space_is_removed_and_a_field_may_have_no_colon() -> None:
    events, _ = parse(b"data:  two spaces\ndata\ndata:no space\n\n")
    assert events[0].data == " two spaces\n\nno space"


def test_unknown_fields_are_ignored() -> None:
    events, parser = parse(b"foo: bar\ndata: x\nDATA: y\n\n")
    assert [e.data for e in events] == ["x"] and parser.retry_ms is None


def test_every_line_ending_is_understood_and_a_bom_is_skipped() -> None:
    for stream in (b"data: a\r\ndata: b\r\n\r\n", b"data: a\rdata: b\r\r",
                   b"data: a\ndata: b\n\n", b"\xef\xbb\xbfdata: a\r\ndata: b\n\r"):
        events, _ = parse(stream)
        assert [e.data for e in events] == ["a\nb"], stream


def test_a_byte_order_mark_is_skipped_only_at_the_start() -> None:
    events, _ = parse(b"data: x\n\n\xef\xbb\xbfdata: y\n\n")
    assert [e.data for e in events] == ["x"]  # the second "field" is "\ufeffdata": unknown


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    events, _ = parse(b"data: caf\xe9\n\n")
    assert events[0].data == "caf\ufffd"


STREAMS = [
    b"retry: 1000\n\nid: 1\ndata: {\"id\":1}\n\n: keep-alive\n\nid: 2\ndata: a\ndata: b\n\n",
    b"\xef\xbb\xbfevent: gone\r\ndata: x\r\n\r\nid: 5\rdata: caf\xc3\xa9 \xe2\x82\xac\r\r",
    b"data: one\r\n\r\ndata:two\n\n:c\r\nid: 9\x00\ndata: three\r\n\r\n",
]


def whole(stream: bytes) -> tuple[list[ServerSentEvent], str, int | None, int]:
    events, parser = parse(stream)
    return events, parser.last_event_id, parser.retry_ms, parser.comments


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(STREAMS), st.lists(st.integers(min_value=0, max_value=200), max_size=12))
def test_cutting_a_stream_into_any_pieces_changes_nothing(stream: bytes, cuts: list[int]) -> None:
    parser = SSEParser()
    points = sorted({min(c, len(stream)) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    events = [e for piece in pieces for e in parser.feed(piece)]
    assert (events, parser.last_event_id, parser.retry_ms, parser.comments) == whole(stream)
