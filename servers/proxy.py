"""A small reverse proxy to put between clients and a server, the way nginx or a load balancer sits.

Long polls meet proxies in production, and proxies have opinions: they give up on an upstream
that stays silent longer than their read timeout (nginx's `proxy_read_timeout`, 60 s by
default) and answer 504, and when they restart or reload, every connection through them is
cut at once. This proxy does both, on purpose and on command:

    python -m servers.proxy --upstream http://127.0.0.1:8000 --port 0 [--read-timeout 60]

It forwards method, path, query, body and headers both ways (X-Stream-Id, Retry-After and
Content-Type included), and reserves two paths for itself:

    POST /_proxy/cut     close every open client connection and every upstream request
    GET  /_proxy/stats   what it forwarded, answered itself, and cut

Like nginx without `keepalive` in its upstream block, it opens a new upstream connection per
request, so a restarted upstream is reached on the next request. It binds loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web, web_protocol
from aiohttp.web_protocol import RequestHandler
from yarl import URL

from servers.contract import LOOPBACK
from servers.startup import ServerConfig, announce, bind_socket, die_with_parent

NAME = "proxy"
DEFAULT_READ_TIMEOUT_S = 60.0  # nginx's proxy_read_timeout default
CONNECT_TIMEOUT_S = 5.0
CONTROL_PREFIX = "/_proxy/"

# Hop-by-hop headers (RFC 9110 section 7.6.1) belong to one connection and are never forwarded.
# Host and Content-Length are set anew for the next hop.
_NOT_FORWARDED = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length",
})


def _error(status: int, code: str, detail: str) -> web.Response:
    """An error answered by the proxy itself, in the kit's JSON shape."""
    return web.json_response({"error": code, "detail": detail}, status=status,
                             headers={"X-Proxy-Error": code})


class JsonErrorsHandler(RequestHandler):
    """aiohttp's connection handler, answering what its HTTP parser refuses in the kit's JSON.

    aiohttp answers a request it cannot parse (a bad request line, a header line over 8,190
    bytes) with plain text and logs a traceback; this proxy answers JSON and logs one line.
    """

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:  # an answer is already on its way: cannot replace it
            raise ConnectionError("response already started; cannot send an error")
        reason = (message or (str(exc) if exc else "") or "").strip().splitlines()
        first = (reason[0] if reason else f"status {status}")[:200]
        self.logger.warning("proxy: answered %d to %s: %s", status, request.remote, first)
        if status >= 500:
            response = _error(status, "proxy_error", "The proxy failed while handling this "
                              "request; its log says why. Retry, or restart the proxy.")
        else:
            response = _error(status, "bad_request", f"The proxy could not read the request "
                              f"as HTTP/1.1 ({first}); check the request line and headers.")
        response.force_close()
        return response


@dataclass
class ProxyStats:
    """What `/_proxy/stats` reports."""

    upstream: str
    read_timeout: float
    forwarded: int = 0  # requests sent upstream
    in_flight: int = 0  # requests waiting for the upstream right now
    statuses: Counter[int] = field(default_factory=Counter)  # every status sent to clients
    gateway_timeouts: int = 0  # 504: the upstream said nothing for read_timeout seconds
    bad_gateways: int = 0  # 502: the upstream refused the connection or closed it mid-answer
    cuts: int = 0
    connections_cut: int = 0
    started: float = field(default_factory=time.monotonic)

    def snapshot(self, open_connections: int) -> dict[str, Any]:
        return {
            "server": NAME,
            "upstream": self.upstream,
            "read_timeout_s": self.read_timeout,
            "forwarded": self.forwarded,
            "in_flight": self.in_flight,
            "open_connections": open_connections,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "gateway_timeouts": self.gateway_timeouts,
            "bad_gateways": self.bad_gateways,
            "cuts": self.cuts,
            "connections_cut": self.connections_cut,
            "uptime_s": round(time.monotonic() - self.started, 3),
        }


class Proxy:
    """The proxy's state: its upstream session, its client connections and its counters."""

    def __init__(self, upstream: str, read_timeout: float = DEFAULT_READ_TIMEOUT_S) -> None:
        if not upstream.startswith(("http://", "https://")):
            raise ValueError(f"--upstream must be an http:// URL, not {upstream!r}")
        if not 0 < read_timeout <= 3600:
            raise ValueError(f"--read-timeout must be from 0 to 3600 seconds, not {read_timeout}")
        self.upstream = upstream.rstrip("/")
        self.read_timeout = read_timeout
        self.stats = ProxyStats(self.upstream, read_timeout)
        self.server: web.Server | None = None
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, force_close=True),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S,
                                              sock_read=self.read_timeout),
                auto_decompress=False,  # bytes pass through as the upstream sent them
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            response = await self.control(request)
        else:
            response = await self.forward(request)
        self.stats.statuses[response.status] += 1
        return response

    async def control(self, request: web.BaseRequest) -> web.Response:
        """The proxy's own endpoints: cut every connection, or report its counters."""
        path, method = request.path, request.method
        if path == "/_proxy/cut":
            if method != "POST":
                return _error(405, "method_not_allowed", "/_proxy/cut accepts POST only.")
            cut = await self.cut(keep=request.transport)
            return web.json_response({"status": "cut", "connections": cut})
        if path == "/_proxy/stats":
            if method != "GET":
                return _error(405, "method_not_allowed", "/_proxy/stats accepts GET only.")
            return web.json_response(self.stats.snapshot(len(self._connections())))
        return _error(404, "not_found", f"There is no {path}; the proxy's own endpoints are "
                      "POST /_proxy/cut and GET /_proxy/stats. Everything else is forwarded.")

    async def forward(self, request: web.BaseRequest) -> web.Response:
        """Send the request upstream and relay its answer, or answer 502/504 like nginx."""
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "request_too_large", "The request body is larger than the "
                          "proxy accepts (1 MiB); send a smaller body.")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        peer = request.remote or ""
        headers["X-Forwarded-For"] = ", ".join(filter(None, [headers.get("X-Forwarded-For"),
                                                             peer]))
        url = URL(self.upstream + request.raw_path, encoded=True)
        self.stats.forwarded += 1
        self.stats.in_flight += 1
        try:
            async with self.session().request(request.method, url, headers=headers, data=body,
                                              allow_redirects=False) as upstream:
                content = await upstream.read()
                status = upstream.status
                relayed = [(k, v) for k, v in upstream.headers.items()
                           if k.lower() not in _NOT_FORWARDED]
        except asyncio.TimeoutError:
            self.stats.gateway_timeouts += 1
            return _error(504, "gateway_timeout",
                          f"The upstream {self.upstream} sent nothing for {self.read_timeout:g} s, "
                          "the proxy's read timeout. A long poll held longer than this is cut "
                          "here: ask for a shorter hold, or raise the proxy's read timeout.")
        except aiohttp.ClientConnectorError as exc:
            self.stats.bad_gateways += 1
            return _error(502, "bad_gateway", f"The proxy could not connect to the upstream "
                          f"{self.upstream} ({exc.os_error.strerror or exc}); is it running?")
        except aiohttp.ClientError as exc:
            self.stats.bad_gateways += 1
            return _error(502, "bad_gateway", f"The upstream {self.upstream} closed the "
                          f"connection before answering ({type(exc).__name__}); retry.")
        finally:
            self.stats.in_flight -= 1
        response = web.Response(status=status, body=content if status != 204 else None)
        for key, value in relayed:
            response.headers.add(key, value)
        return response

    def _connections(self) -> list[web_protocol.RequestHandler]:
        return self.server.connections if self.server is not None else []

    async def cut(self, keep: asyncio.BaseTransport | None = None) -> int:
        """Close every client connection but `keep`, and every upstream request in flight.

        What a client sees is what a proxy restart or a load balancer's failover looks like:
        its connection closes with no answer. Closing a client connection cancels its handler
        (the server runs with handler_cancellation), which closes its upstream request.
        """
        cut = 0
        for handler in self._connections():
            if handler.transport is None or handler.transport is keep:
                continue
            handler.force_close()
            cut += 1
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        self.stats.cuts += 1
        self.stats.connections_cut += cut
        return cut


async def serve(proxy: Proxy, host: str, port: int) -> None:
    sock = bind_socket(host, port)
    loop = asyncio.get_running_loop()
    proxy.server = server = web.Server(proxy.handle, handler_cancellation=True)
    listener = await loop.create_server(  # access_log=None: no access log (typed Logger only)
        lambda: JsonErrorsHandler(server, loop=loop, access_log=None),  # type: ignore[arg-type]
        sock=sock)
    announce(NAME, sock, ServerConfig(host=host))
    print(f"forwarding to {proxy.upstream}, read timeout {proxy.read_timeout:g} s", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    listener.close()
    await proxy.cut()
    await listener.wait_closed()


def main(argv: list[str] | None = None) -> None:
    die_with_parent()
    p = argparse.ArgumentParser(prog="python -m servers.proxy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream", required=True, help="the server to forward to, e.g. "
                   "http://127.0.0.1:8000")
    p.add_argument("--host", default="127.0.0.1", help="address to bind: loopback only")
    p.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    p.add_argument("--read-timeout", type=float, default=DEFAULT_READ_TIMEOUT_S, metavar="S",
                   help="answer 504 when the upstream sends nothing for S seconds (nginx's "
                        "proxy_read_timeout; default 60)")
    args = p.parse_args(argv)
    if args.host not in LOOPBACK:
        p.error(f"--host {args.host}: the proxy is a teaching tool and binds loopback only")
    try:
        proxy = Proxy(args.upstream, args.read_timeout)
    except ValueError as exc:
        p.error(str(exc))
    try:
        asyncio.run(serve(proxy, args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
