"""How the asyncio server stays up under hostile clients and hard limits. Not the lesson.

`servers.fastapi_server.main` runs uvicorn with these three pieces around it:

* `ConnectionGate` accepts connections itself, instead of `loop.create_server`, and keeps at
  most `budget.connections` open at once: beyond that, and whenever `accept()` fails for lack
  of descriptors (EMFILE), it stops reading the listening socket until a connection closes, so
  new connections wait in the kernel's backlog. Left to the event loop, the same moment goes
  badly: uvloop (libuv) accepts and closes every pending connection without a word, and
  asyncio's own loop logs a traceback and stops accepting for a second.
  With `--tls`, it does each connection's TLS handshake (uvicorn's context), bounded by the
  request timeout.
* `GuardedProtocol` is uvicorn's HTTP protocol (with the one-write transport of
  `servers.fast_path`) that also counts connections for `/stats`, closes a request that is not
  complete after `--request-timeout` with a JSON 408 (a held poll is complete: it is never
  cut), and answers a request its parser refuses with the API's JSON 400, not plain text. It
  offers each request the ASGI extensions of `servers.hangup` (a hang-up, heard without a task)
  and `servers.parking` (an answer written whole, by a publish). A connection upgraded to a
  WebSocket leaves this protocol for uvicorn's WebSocket one: its request is complete, so the
  timeout is off, and the gate still hears when it closes. It also swaps `servers.slim`'s
  smaller stand-ins into uvicorn's connection and request objects.
* `GuardedServer` runs the gate, and stops it first when the server stops.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.types import Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from servers import fast_path, parking
from servers.contract import raw_response, request_timeout, unreadable_request
from servers.hangup import HangupWatch
from servers.limits import AtLimit
from servers.slim import slim_connection, slim_cycle
from servers.stats import Stats

#: accept() errors that mean "no descriptors or memory for one more connection right now"
OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
ACCEPT_BATCH = 128  # connections accepted per turn of the event loop
RETRY_ACCEPT_S = 0.1  # after an EMFILE, try again this soon even if nothing closed


class ConnectionGate:
    """Accepts connections while fewer than `limit` are open; see the module docstring."""

    def __init__(self, limit: int, stats: Stats, at_limit: AtLimit,
                 request_timeout_s: float) -> None:
        self.limit = limit
        self.stats = stats
        self.at_limit = at_limit
        self.request_timeout_s = request_timeout_s
        self.open = 0
        self._listening: list[socket.socket] = []
        self._reading = False
        self._stopped = False
        self._factory: Callable[[], asyncio.Protocol] | None = None
        self._tls: ssl.SSLContext | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._counted: dict[type[asyncio.Protocol], type[asyncio.Protocol]] = {}

    def serve(self, sockets: list[socket.socket], factory: Callable[[], asyncio.Protocol],
              tls: ssl.SSLContext | None = None) -> None:
        """Start accepting on `sockets`, making each connection's protocol with `factory`.

        With `tls` (uvicorn's context, from `--tls`), each connection's TLS handshake happens
        before its protocol sees it, and must finish within the request timeout.
        """
        self._loop = asyncio.get_running_loop()
        self._factory = factory
        self._tls = tls
        self._listening = sockets
        for sock in sockets:
            sock.setblocking(False)
        self._resume()

    def stop(self) -> None:
        self._stopped = True
        self._pause()

    def opened(self) -> None:
        """A protocol's connection_made: count it for /stats."""
        self.stats.count_connection()

    def closed(self) -> None:
        """A protocol's connection_lost: one more connection may be accepted."""
        self.open -= 1
        if not self._reading and not self._stopped and self.open < self.limit:
            self._resume()

    def counted(self, protocol: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
        """`protocol`, telling this gate when its connection closes: for a connection that
        leaves the HTTP protocol (an upgrade to a WebSocket), whose `connection_lost` no longer
        runs, so the gate would count it open forever and, after `limit` of them, stop accepting.
        """
        if protocol not in self._counted:
            gate = self

            class Counted(protocol):  # type: ignore[valid-type, misc]
                def connection_lost(self, exc: Exception | None) -> None:
                    super().connection_lost(exc)
                    gate.closed()

            self._counted[protocol] = Counted
        return self._counted[protocol]

    def _resume(self) -> None:
        if self._reading or self._stopped or self._loop is None:
            return
        for sock in self._listening:
            self._loop.add_reader(sock.fileno(), self._accept, sock)
        self._reading = True

    def _pause(self) -> None:
        if self._reading and self._loop is not None:
            for sock in self._listening:
                self._loop.remove_reader(sock.fileno())
        self._reading = False

    def _accept(self, sock: socket.socket) -> None:
        assert self._loop is not None and self._factory is not None
        for _ in range(ACCEPT_BATCH):
            if self.open >= self.limit:
                self._pause()
                self.at_limit.report(
                    f"at the open-file limit: {self.open} connections open, as many as the "
                    "server keeps; new connections wait to be accepted until one closes")
                return
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno not in OUT_OF_RESOURCES:
                    raise
                self._pause()
                self._loop.call_later(RETRY_ACCEPT_S, self._resume)
                self.at_limit.report(
                    f"at the open-file limit: accept() failed ({exc.strerror}) with "
                    f"{self.open} connections open; new connections wait to be accepted")
                return
            self.open += 1
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._loop.create_task(self._connect(conn))

    async def _connect(self, conn: socket.socket) -> None:
        assert self._loop is not None and self._factory is not None
        try:
            if self._tls is None:
                await self._loop.connect_accepted_socket(self._factory, conn)
            else:
                await self._loop.connect_accepted_socket(
                    self._factory, conn, ssl=self._tls,
                    ssl_handshake_timeout=self.request_timeout_s)
        except OSError:  # the client left (or its TLS handshake failed) before its transport
            conn.close()
            self.closed()


class GuardedProtocol(fast_path.OneWritePerResponse):
    """uvicorn's HTTP protocol, guarded; `for_gate` makes the subclass one server uses."""

    gate: ConnectionGate
    offers_parking = False  # `servers.parking`'s extension: only an app that parks polls uses it
    _deadline: asyncio.TimerHandle | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hangup = HangupWatch()
        if self.offers_parking and isinstance(self, HttpToolsProtocol):  # httptools' cycle
            # (offered with the hang-up's, in the one dict of extensions each request gets;
            # about 250 bytes per connection, so not where nothing would use it)
            self.hangup.extensions[parking.EXTENSION] = {"send": self.send_whole}

    @classmethod
    def for_gate(cls, gate: ConnectionGate, *, parking: bool = False) -> type[GuardedProtocol]:
        return type("GuardedProtocolForGate", (cls,), {"gate": gate, "offers_parking": parking})

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.gate.opened()
        super().connection_made(transport)
        slim_connection(self)  # smaller empty pipeline and flow-control event (servers.slim)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
        self.hangup.hung_up()
        self.gate.closed()

    def on_headers_complete(self) -> None:
        """The request's scope gets `servers.hangup`'s extension: a held poll hears of a hang-up
        from `connection_lost`, without a task of its own waiting for `http.disconnect`."""
        scope: Any = self.scope
        if "extensions" not in scope:
            scope["extensions"] = self.hangup.extensions
        super().on_headers_complete()
        slim_cycle(self.cycle)  # the request's message event, before its ASGI task runs

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self._idle():
            self._arm()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if self._deadline is not None and self._request_complete():
            self._disarm()  # complete: from now on it may be held as long as it asks

    def handle_websocket_upgrade(self, *args: Any) -> None:
        """The request became a WebSocket: complete, so never timed out from now on (it was cut
        after --request-timeout), and counted by the gate until the WebSocket closes."""
        self._disarm()
        upgraded: Any = self
        upgraded.ws_protocol_class = self.gate.counted(upgraded.ws_protocol_class)
        super().handle_websocket_upgrade(*args)

    def send_whole(self, scope: Scope, status: int, head: bytes, body: bytes) -> bool:
        """`servers.parking`'s extension for this connection (`parking.send_whole`)."""
        return parking.send_whole(self, scope, status, head, body)

    def send_400_response(self, msg: str) -> None:
        """The parser refused the request: answer the API's JSON instead of uvicorn's text."""
        self.transport.write(raw_response(unreadable_request(msg.rstrip("."))))
        self.transport.close()

    # The request being read is `self.cycle` once its headers are in (uvicorn's protocols,
    # h11 and httptools alike, keep it there); `more_body` turns False when its body is in.
    def _idle(self) -> bool:
        cycle: Any = self.cycle
        return cycle is None or bool(cycle.response_complete)

    def _request_complete(self) -> bool:
        cycle: Any = self.cycle
        return cycle is not None and not cycle.response_complete and not cycle.more_body

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self.gate.request_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self._request_complete() or self.transport.is_closing():
            return
        cycle: Any = self.cycle
        if not (cycle is not None and cycle.response_started and cycle.more_body):
            # (an app may answer before the body is in, e.g. a 401: then only close)
            self.transport.write(raw_response(request_timeout(self.gate.request_timeout_s)))
        self.transport.close()


class GuardedServer(fast_path.GracefulServer):
    """uvicorn, accepting through a `ConnectionGate` (see the module docstring)."""

    def __init__(self, config: uvicorn.Config, release_waiters: Callable[[], None],
                 gate: ConnectionGate) -> None:
        super().__init__(config, release_waiters)
        self.gate = gate

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # everything but the listening: the gate does that
        config = self.config

        def protocol() -> asyncio.Protocol:
            # as uvicorn makes its protocols (its own factory is local to Server.startup)
            make: Any = config.http_protocol_class
            made: asyncio.Protocol = make(config=config, server_state=self.server_state,
                                          app_state=self.lifespan.state)
            return made

        self.gate.serve(list(sockets or []), protocol, tls=config.ssl)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.gate.stop()
        await super().shutdown(sockets)
