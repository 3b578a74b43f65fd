"""`WireCounter.stop()` with connections still open ends them quietly.

Notebook 07 stops its byte-counting relays while streams are open through them. On Python 3.11
every such stop logged a CancelledError traceback from asyncio's `start_server` callback, which
landed in the learner's cell (the browser test found it). Live, on loopback.
"""

from __future__ import annotations

import logging
import socket
import time

import pytest

from helpers import launch
from helpers.delivery.wire import WireCounter

pytestmark = pytest.mark.live


def test_stop_with_open_streams_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncio")
    with launch("asyncio") as server:
        relay = WireCounter(server.url).start()
        port = int(relay.url.rsplit(":", 1)[1])
        held = []
        for _ in range(3):  # SSE streams held open through the relay
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert b" 200 " in sock.recv(4096)
            held.append(sock)
        assert relay.counts().connections == 3
        relay.stop()
        time.sleep(0.2)  # the relay loop's callbacks run after stop() returns
        for sock in held:
            sock.close()
    assert not [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR], \
        caplog.text
