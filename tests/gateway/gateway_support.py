"""What the gateway tests share: a raw SSE reader that timestamps every byte it receives.

Raw sockets, not an SSE client, so that the test sees exactly when bytes left the proxy: a
client library's own buffering would hide what a buffering proxy does.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit


class RawStream:
    """`GET path` over one socket; `read_until(marker)` collects the bytes as they arrive."""

    def __init__(self, url: str, path: str = "/sse", headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=5)
        lines = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.received = b""
        self.arrivals: list[tuple[float, int]] = []  # (when, bytes) of each recv

    def read_until(self, marker: bytes, timeout: float) -> float | None:
        """Seconds until `marker` has arrived (from this call), or None after `timeout` s."""
        began = time.monotonic()
        while marker not in self.received:
            left = began + timeout - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return None
            if not chunk:
                return None
            self.received += chunk
            self.arrivals.append((time.monotonic(), len(chunk)))
        return time.monotonic() - began

    def closed_within(self, timeout: float) -> bool:
        """True if the proxy ends the response (or the connection) within `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return False
            except ConnectionError:
                return True
            if not chunk or self.received.endswith(b"0\r\n\r\n"):
                return True
            self.received += chunk
            if self.received.endswith(b"0\r\n\r\n"):  # the last chunk of a chunked body
                return True
        return False

    def close(self) -> None:
        self.sock.close()
