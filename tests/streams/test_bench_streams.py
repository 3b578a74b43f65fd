"""bench.streams without servers: the subscriber's marker, its pongs, and the report's ratios."""

from __future__ import annotations

from typing import Any

from bench.streams import Subscriber, report_lines, subscribe_request


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        pass


def test_a_subscriber_spots_its_marker_even_split_across_reads() -> None:
    sub = Subscriber(subscribe_request("sse", "/sse"), b" 200 ")
    transport = Transport()
    sub.connection_made(transport)  # type: ignore[arg-type]
    assert transport.written[0].startswith(b"GET /sse HTTP/1.1\r\n")
    sub.data_received(b"HTTP/1.1 200 OK\r\n\r\nretry: 1000\n\n")
    assert sub.opened and sub.got_at is None
    sub.watch(b"bench-sse-0-abcd")
    sub.data_received(b'id: 1\ndata: {"message":"bench-s')
    assert sub.got_at is None
    sub.data_received(b'se-0-abcd"}\n\n')
    assert sub.got_at is not None


def test_a_websocket_subscriber_answers_pings_with_masked_pongs() -> None:
    request = subscribe_request("ws", "/ws")
    assert b"Upgrade: websocket" in request and b"Sec-WebSocket-Key: " in request
    sub = Subscriber(request, b" 101 ")
    transport = Transport()
    sub.connection_made(transport)  # type: ignore[arg-type]
    sub.data_received(b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x02{}\x89\x04pi")
    assert len(transport.written) == 1  # the ping is not complete yet
    sub.data_received(b"ng")
    assert transport.written[1] == b"\x8a\x84\x00\x00\x00\x00ping"


def row(server: str, protocol: str, n: int, fanout: float, kib: float) -> dict[str, Any]:
    return {"server": server, "protocol": protocol, "subscribers": n, "delivered": n,
            "rounds": 3, "fanout_ms": fanout, "first_ms": 1.5, "median_delivery_ms": fanout / 2,
            "kib_per_connection": kib}


def test_the_report_gives_ratios_to_nchan_and_the_targets() -> None:
    rows = [row("fastapi", "sse", 10_000, 600.0, 30.0), row("nchan", "sse", 10_000, 300.0, 10.0),
            row("fastapi", "sse", 1, 1.5, 800.0)]
    text = "\n".join(report_lines(rows))
    assert "| sse | fastapi | 10,000 | 10,000 | 600 | 2.0× |" in text
    assert "= 2.0× Nchan's 300 ms | yes |" in text
    assert "sse, one subscriber: p50 ≤ 2 ms | 1.50 ms over 3 events | yes |" in text
    assert "ws fan-out to 10,000: within 3× Nchan | not measured in this run" in text
    assert report_lines([]) == []
