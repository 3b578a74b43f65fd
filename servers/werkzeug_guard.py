"""How the Flask server stays up under hostile clients and hard limits. Not the lesson.

`servers.flask_server.main` serves with werkzeug's own WSGI server, plus:

* `GuardedHandler`, werkzeug's request handler (one per TCP connection), which counts
  connections for `/stats`, gives each request `--request-timeout` seconds to arrive whole
  (request line, headers and body; a `RequestDeadlines` thread closes the late ones with a
  JSON 408, so a trickle of slow clients cannot keep threads forever; a held poll has arrived
  whole, and is never cut), and answers what its HTTP parser refuses (414, 431, a bad request
  line) with the API's JSON instead of an HTML page;
* `GuardedThreadedServer`, werkzeug's threaded server with at most `max_threads` request
  threads (beyond them, new connections wait in the backlog), and, like
  `GuardedSingleThreadedServer`, an accept loop that, out of descriptors (EMFILE), waits a
  moment and says so in one line instead of spinning at 100 % CPU and printing a traceback
  per connection.
* `serve_tls`, for `--tls`: each TLS handshake in its connection's thread, not the accept loop.
"""

from __future__ import annotations

import errno
import io
import socket
import ssl
import sys
import threading
import time
from http import HTTPStatus
from typing import Any

from werkzeug.serving import BaseWSGIServer, ThreadedWSGIServer, WSGIRequestHandler

from servers.contract import ApiError, raw_response, request_timeout, unreadable_request
from servers.limits import AtLimit
from servers.stats import Stats

OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
#: The API's error codes for what werkzeug's parser (http.server's) refuses; else bad_request.
PARSER_ERRORS = {414: "uri_too_long", 431: "headers_too_large",
                 505: "http_version_not_supported", 501: "not_implemented"}
MAX_BODY_BYTES = 1 << 20  # a publish is at most 4,096 characters; this is far more
ACCEPT_PAUSE_S = 0.05  # after an EMFILE, before accepting again


class RequestDeadlines:
    """One thread that closes every connection whose request is late (see GuardedHandler)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._due: dict[GuardedHandler, float] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self, handler: GuardedHandler) -> None:
        with self._lock:
            self._due[handler] = time.monotonic() + self.timeout_s
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="request-deadlines",
                                                daemon=True)
                self._thread.start()

    def done(self, handler: GuardedHandler) -> bool:
        """The request arrived whole; False if its deadline passed first (it was answered)."""
        with self._lock:
            return self._due.pop(handler, None) is not None

    def _run(self) -> None:
        tick = min(0.25, self.timeout_s / 4)
        while True:
            time.sleep(tick)
            now = time.monotonic()
            with self._lock:
                late = [h for h, due in self._due.items() if due <= now]
                for handler in late:
                    del self._due[handler]
            for handler in late:
                handler.too_late(self.timeout_s)


class _Preread(io.BytesIO):
    """A request body already read within the deadline, standing in for the socket's file."""

    def __init__(self, body: bytes, socket_file: Any) -> None:
        super().__init__(body)
        self.socket_file = socket_file

    def close(self) -> None:
        super().close()
        self.socket_file.close()  # or the socket's descriptor would outlive the connection


class GuardedHandler(WSGIRequestHandler):
    """werkzeug's handler, guarded; `for_server` makes the subclass one server uses."""

    stats: Stats
    deadlines: RequestDeadlines

    @classmethod
    def for_server(cls, stats: Stats, deadlines: RequestDeadlines) -> type[GuardedHandler]:
        return type("GuardedHandlerForServer", (cls,), {"stats": stats, "deadlines": deadlines})

    def setup(self) -> None:
        self.stats.count_connection()
        super().setup()
        self.deadlines.start(self)

    def parse_request(self) -> bool:
        if not super().parse_request() or not self._read_body():
            self.deadlines.done(self)
            return False
        return self.deadlines.done(self)  # False: the 408 went out; say nothing more

    def _read_body(self) -> bool:
        """Read the body now (Content-Length or chunked), so that its deadline is the request's."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.send_error(400, "Bad Content-Length", "Content-Length must be a number.")
            return False
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send_raw(ApiError(413, "request_too_large", f"The body has {length} bytes; "
                                    f"this server reads at most {MAX_BODY_BYTES}."))
            return False
        if length == 0:
            return True
        self._continue()
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            return False  # the client left, or the deadline closed the connection
        self.rfile = _Preread(body, self.rfile)
        return True

    def _read_chunked(self) -> bool:
        """A chunked body, read whole and handed on as a Content-Length one (at most 1 MiB)."""
        self._continue()
        chunks: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(100)
            try:
                length = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                if line:  # not the client leaving, nor the deadline closing the connection
                    self.send_error(400, "Bad chunk", "A chunk size must be a hex number.")
                return False
            size += length
            if length < 0 or size > MAX_BODY_BYTES:
                self.close_connection = True
                self._send_raw(ApiError(413, "request_too_large", "The chunked body is over "
                                        f"{MAX_BODY_BYTES} bytes, the most this server reads."))
                return False
            chunk = self.rfile.read(length + 2)[:length] if length else b""
            if len(chunk) < length:
                self.close_connection = True
                return False
            if not length:
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields: ignored
                break
            chunks.append(chunk)
        del self.headers["Transfer-Encoding"], self.headers["Content-Length"]
        self.headers["Content-Length"] = str(size)
        self.rfile = _Preread(b"".join(chunks), self.rfile)
        return True

    def _continue(self) -> None:
        """Answer `Expect: 100-continue` here, before reading the body (and not again later)."""
        if self.headers.get("Expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            del self.headers["Expect"]

    def too_late(self, timeout_s: float) -> None:
        """Called by RequestDeadlines: answer 408 and close, which ends this handler's read."""
        if not isinstance(self.connection, ssl.SSLSocket):
            # Over TLS, this thread must not write while the handler's thread is reading (or
            # still in the handshake): one TLS connection is not safe to use from two threads.
            self._send_raw(request_timeout(timeout_s))
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """What the HTTP parser refuses (414, 431, a bad request line): the API's JSON."""
        self.log_error("code %d, message %s", code, message)
        self.close_connection = True
        what = "; ".join(filter(None, [message, explain])) or HTTPStatus(code).phrase
        detail = unreadable_request(what).detail
        self._send_raw(ApiError(code, PARSER_ERRORS.get(code, "bad_request"), detail))

    def _send_raw(self, error: ApiError) -> None:
        try:
            self.connection.sendall(raw_response(error))
        except OSError:
            pass


class _AcceptWithoutSpinning:
    """An accept loop that, out of descriptors, pauses and says so once (see module doc)."""

    at_limit: AtLimit

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            conn: tuple[socket.socket, Any] = super().get_request()  # type: ignore[misc]
            return conn
        except OSError as exc:
            if exc.errno in OUT_OF_RESOURCES:
                self.at_limit.report(f"at the open-file limit: accept() failed "
                                     f"({exc.strerror}); new connections wait to be accepted")
                time.sleep(ACCEPT_PAUSE_S)  # the socket stays readable: don't spin on it
            raise  # socketserver drops this attempt and tries again

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) and exc.errno in OUT_OF_RESOURCES:
            self.at_limit.report(f"at the open-file limit: a request failed ({exc.strerror})")
            return
        super().handle_error(request, client_address)  # type: ignore[misc]


def serve_tls(server: BaseWSGIServer, tls: ssl.SSLContext | None) -> None:
    """Serve https with `tls` (from `--tls`), each handshake in its connection's own thread.

    werkzeug's own `ssl_context` wraps the listening socket so that `accept()` does the
    handshake, in the one thread that accepts: a client that connects and never speaks TLS
    would stop the whole server. Here the handshake waits for the handler's first read.
    """
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True,
                                        do_handshake_on_connect=False)
        server.ssl_context = tls  # werkzeug reads it: wsgi.url_scheme is "https"


class GuardedSingleThreadedServer(_AcceptWithoutSpinning, BaseWSGIServer):
    """werkzeug's one-request-at-a-time server, with the guarded accept loop."""

    def __init__(self, sock: socket.socket, app: Any, handler: type[GuardedHandler],
                 at_limit: AtLimit, tls: ssl.SSLContext | None = None) -> None:
        self.at_limit = at_limit
        host, port = sock.getsockname()[:2]
        super().__init__(host, port, app, handler, fd=sock.fileno())
        serve_tls(self, tls)


class GuardedThreadedServer(_AcceptWithoutSpinning, ThreadedWSGIServer):
    """werkzeug's thread-per-connection server, with at most `max_threads` at once."""

    def __init__(self, sock: socket.socket, app: Any, handler: type[GuardedHandler],
                 at_limit: AtLimit, max_threads: int, why: str = "",
                 tls: ssl.SSLContext | None = None) -> None:
        self.at_limit = at_limit
        self.max_threads = max_threads
        self.why = why  # what sets max_threads, for the at-limit line
        self.stopping = False  # set before shutdown(): stop waiting for a free thread
        self._free = threading.BoundedSemaphore(max_threads)
        host, port = sock.getsockname()[:2]
        super().__init__(host, port, app, handler, fd=sock.fileno())
        serve_tls(self, tls)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._free.acquire(blocking=False):
            self.at_limit.report(f"{self.why}all {self.max_threads} request threads are busy; "
                                 "new connections wait to be accepted until one is free")
            while not self._free.acquire(timeout=0.5):
                if self.stopping:
                    self.shutdown_request(request)
                    return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._free.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._free.release()
