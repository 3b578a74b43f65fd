"""A small reverse proxy and gateway to put in front of servers, as nginx or a load balancer sits.

Long polls meet proxies in production, and proxies have opinions: they give up on an upstream
that stays silent longer than their read timeout (nginx's `proxy_read_timeout`, 60 s by
default) and answer 504, and when they restart or reload, every connection through them is
cut at once. This proxy does both, on purpose and on command:

    python -m servers.proxy --upstream http://127.0.0.1:8000 --port 0 [--read-timeout 60]

It forwards method, path, query, body and headers both ways (X-Stream-Id, Retry-After and
Content-Type included), relays a streamed answer (SSE) as it arrives and a WebSocket frame by
frame (servers/proxy_streams.py, and `--buffering`), and reserves two paths for itself:

    POST /_proxy/cut     close every open client connection and every upstream request
    GET  /_proxy/stats   what it forwarded, answered itself, and cut; each upstream's health

With several `--upstream`, a `--token` or a `--rate-limit`, it is a small gateway
(servers/gateway.py). Like nginx without `keepalive` in its upstream block, it opens a new
upstream connection per request, so it reaches a restarted upstream at once. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from typing import Any

import aiohttp
from aiohttp import web, web_protocol
from yarl import URL

from servers import proxy_streams as streams
from servers.contract import LOOPBACK
from servers.gateway import Door, Upstream, Upstreams
from servers.proxy_http import NOT_FORWARDED, JsonErrorsHandler, ProxyStats, error
from servers.proxy_http import forwarded_headers as forwarded
from servers.proxy_streams import Buffering
from servers.startup import ServerConfig, announce, bind_socket, die_with_parent

NAME = "proxy"
DEFAULT_READ_TIMEOUT_S = 60.0  # nginx's proxy_read_timeout default
CONNECT_TIMEOUT_S = 5.0
CONTROL_PREFIX = "/_proxy/"
TOKEN_ENV = "POLLING_LAB_GATEWAY_TOKEN"  # not the servers' variable: a plain proxy stays open
SAFE_TO_RESEND = frozenset({"GET", "HEAD", "OPTIONS"})  # resent after an answer that was lost
CONNECT_FAILED = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)  # nothing sent


class Proxy:
    """The proxy's state: its upstreams, its door, its client connections and its counters."""

    def __init__(self, upstream: str | list[str], read_timeout: float = DEFAULT_READ_TIMEOUT_S,
                 *, buffering: Buffering = "off", token: str | None = None,
                 rate_limit: float | None = None, rate_burst: int | None = None) -> None:
        self.upstreams = Upstreams([upstream] if isinstance(upstream, str) else upstream)
        if not 0 < read_timeout <= 3600:
            raise ValueError(f"--read-timeout must be from 0 to 3600 seconds, not {read_timeout}")
        if buffering not in streams.BUFFERING_MODES:
            raise ValueError(f"--buffering must be off, on or force, not {buffering!r}")
        self.read_timeout, self.buffering = read_timeout, buffering
        self.door = Door(token, rate_limit, rate_burst)
        self.stats = ProxyStats(read_timeout, buffering)
        self.streams = streams.StreamStats()
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
        response: web.StreamResponse
        if request.path.startswith(CONTROL_PREFIX):
            response = await self.control(request)
        elif refusal := self.door.admit(request.method, request.path, request.headers,
                                        request.remote):
            response = error(*refusal)
        elif request.headers.get("Upgrade", "").lower() == "websocket":
            response = await self.websocket(request)
        else:
            response = await self.forward(request)
        self.stats.statuses[response.status] += 1
        return response

    async def control(self, request: web.BaseRequest) -> web.Response:
        """The proxy's own endpoints: cut every connection, or report its counters."""
        path, method = request.path, request.method
        if path == "/_proxy/cut":
            if method != "POST":
                return error(405, "method_not_allowed", "/_proxy/cut accepts POST only.")
            cut = await self.cut(keep=request.transport)
            return web.json_response({"status": "cut", "connections": cut})
        if path == "/_proxy/stats":
            if method != "GET":
                return error(405, "method_not_allowed", "/_proxy/stats accepts GET only.")
            return web.json_response(self.snapshot())
        return error(404, "not_found", f"There is no {path}; the proxy's own endpoints are "
                     "POST /_proxy/cut and GET /_proxy/stats. Everything else is forwarded.")

    def snapshot(self) -> dict[str, Any]:
        return {"server": NAME, **self.upstreams.snapshot(),
                "open_connections": len(self._connections()), **self.stats.snapshot(),
                **self.door.snapshot(), "streams": self.streams.snapshot()}

    async def forward(self, request: web.BaseRequest,
                      handshake: bool = False) -> web.StreamResponse:
        """Send the request upstream and relay its answer, or answer 502/504 like nginx.

        A connect that fails is tried on the next upstream, whatever the method (nothing was
        sent); an upstream that closes before answering, only for a GET (it may have acted).
        """
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return error(413, "request_too_large", "The request body is larger than the "
                         "proxy accepts (1 MiB); send a smaller body.")
        headers = forwarded(request, handshake=handshake)
        failure = "no upstream was tried"
        for attempt, upstream in enumerate(self.upstreams.candidates()):
            self.stats.retried += attempt > 0
            url = URL(upstream.url + request.raw_path, encoded=True)
            self.stats.forwarded += 1
            upstream.forwarded += 1
            self.stats.in_flight += 1
            try:
                answer = await self.session().request(request.method, url, headers=headers,
                                                      data=body, allow_redirects=False)
                return await self.relay(request, upstream, answer)
            except CONNECT_FAILED as exc:
                self.upstreams.connect_failed(upstream, exc)
                failure = f"could not connect to {upstream.url} ({exc})"
            except asyncio.TimeoutError:
                self.stats.gateway_timeouts += 1
                return error(504, "gateway_timeout",
                             f"The upstream {upstream.url} sent nothing for "
                             f"{self.read_timeout:g} s, the proxy's read timeout. A long poll "
                             "held longer than this is cut here: ask for a shorter hold, or "
                             "raise the proxy's read timeout.")
            except aiohttp.ClientError as exc:
                failure = (f"{upstream.url} closed the connection before answering "
                           f"({type(exc).__name__})")
                if request.method not in SAFE_TO_RESEND:
                    break
            finally:
                self.stats.in_flight -= 1
        self.stats.bad_gateways += 1
        return error(502, "bad_gateway", f"The proxy got no answer from an upstream: the last "
                     f"one tried {failure}. Is the server running? Retry.")

    async def relay(self, request: web.BaseRequest, upstream: Upstream,
                    answer: aiohttp.ClientResponse) -> web.StreamResponse:
        """Relay one upstream answer: whole, or as it arrives when it is a stream."""
        async with answer:
            upstream.statuses[answer.status] += 1
            upstream.mark(True)  # it answered: back in the rotation before its next check
            response: web.StreamResponse
            if streams.is_streamed(answer):
                response = web.StreamResponse(status=answer.status)
            else:
                content = await answer.read()
                response = web.Response(status=answer.status,
                                        body=content if answer.status != 204 else None)
            for key, value in answer.headers.items():
                if key.lower() not in NOT_FORWARDED:
                    response.headers.add(key, value)
            response.headers["X-Upstream"] = upstream.url
            if not streams.is_streamed(answer):
                return response
            return await streams.relay_body(request, answer, response,
                                    streams.buffers(self.buffering, answer.headers), self.streams)

    async def websocket(self, request: web.BaseRequest) -> web.StreamResponse:
        """Open the WebSocket upstream first (so a refusal reaches the client as an HTTP
        answer), then accept the client's, and relay frames until either side closes."""
        for upstream in self.upstreams.candidates():
            url = URL(upstream.url + request.raw_path, encoded=True)
            upstream.forwarded += 1
            try:
                upstream_ws = await self.session().ws_connect(
                    url, headers=forwarded(request), autoping=True, heartbeat=None,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0))
            except CONNECT_FAILED as exc:
                self.upstreams.connect_failed(upstream, exc)
                continue
            except aiohttp.WSServerHandshakeError:
                return await self.forward(request, True)  # ask again: its refusal, verbatim
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                self.stats.bad_gateways += 1
                return error(502, "bad_gateway", f"{upstream.url} did not complete the "
                             f"WebSocket handshake ({type(exc).__name__}); retry.")
            upstream.statuses[101] += 1
            client = web.WebSocketResponse(autoping=True, compress=False)
            client.headers["X-Upstream"] = upstream.url
            try:
                await client.prepare(request)
            except BaseException:
                await upstream_ws.close()
                raise
            guard = self.door.frame_guard(request.headers.get("Authorization"))
            await streams.WebSocketRelay(client, upstream_ws, self.streams, guard).run()
            return client
        self.stats.bad_gateways += 1
        return error(502, "bad_gateway", "The proxy could not connect to any upstream for this "
                     "WebSocket; is the server running? Retry.")

    def _connections(self) -> list[web_protocol.RequestHandler]:
        return self.server.connections if self.server is not None else []

    async def cut(self, keep: asyncio.BaseTransport | None = None) -> int:
        """Close every client connection but `keep`, and every upstream request in flight.

        What a client sees is what a proxy restart or a load balancer's failover looks like:
        its connection closes with no answer. Closing a client connection cancels its handler
        (the server runs with handler_cancellation), which closes its upstream request or its
        upstream WebSocket.
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
    urls = ", ".join(m.url for m in proxy.upstreams.members)
    print(f"forwarding to {urls}, read timeout {proxy.read_timeout:g} s, buffering "
          f"{proxy.buffering}", flush=True)
    async with proxy.upstreams.checking():
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
    p.add_argument("--upstream", required=True, action="append", metavar="URL",
                   help="a server to forward to, e.g. http://127.0.0.1:8000; repeat it for a "
                        "round-robin rotation over the healthy ones")
    p.add_argument("--host", default="127.0.0.1", help="address to bind: loopback only")
    p.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    p.add_argument("--read-timeout", type=float, default=DEFAULT_READ_TIMEOUT_S, metavar="S",
                   help="answer 504 when the upstream sends nothing for S seconds, and end a "
                        "stream silent that long (nginx's proxy_read_timeout; default 60)")
    p.add_argument("--buffering", choices=streams.BUFFERING_MODES, default="off",
                   help="off: relay a stream as it arrives; on: buffer it unless the upstream "
                        "says X-Accel-Buffering: no; force: buffer it anyway (default off)")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                   help="require 'Authorization: Bearer TOKEN' to publish through the gateway "
                        f"(POST /trigger_event and WebSocket publish frames). Default: the "
                        f"{TOKEN_ENV} environment variable")
    p.add_argument("--rate-limit", type=float, default=None, metavar="N",
                   help="at most N requests per second per client (X-Client-Id, else the "
                        "address), in bursts of --rate-burst; beyond it 429 with Retry-After")
    p.add_argument("--rate-burst", type=int, default=None, metavar="B",
                   help="the burst the rate limit allows (default: N, one second's worth)")
    args = p.parse_args(argv)
    if args.host not in LOOPBACK:
        p.error(f"--host {args.host}: the proxy is a teaching tool and binds loopback only")
    try:
        proxy = Proxy(args.upstream, args.read_timeout, buffering=args.buffering,
                      token=args.token, rate_limit=args.rate_limit, rate_burst=args.rate_burst)
    except ValueError as exc:
        p.error(str(exc))
    try:
        asyncio.run(serve(proxy, args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
