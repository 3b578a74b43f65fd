"""What the proxy answers itself and which headers it passes on: its JSON errors and counters.

An error the proxy answers (502, 504, 429, a request its parser refuses) has the kit's JSON
shape `{"error": code, "detail": sentence}` and an `X-Proxy-Error` header, so a learner can tell
it from an error the server behind it answered.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

# Hop-by-hop headers (RFC 9110 section 7.6.1) belong to one connection and are never forwarded.
# Host and Content-Length are set anew for the next hop.
NOT_FORWARDED = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length",
})
# A WebSocket handshake is made anew on each side of the proxy.
WS_HANDSHAKE = frozenset({"sec-websocket-key", "sec-websocket-version", "sec-websocket-accept",
                          "sec-websocket-extensions", "sec-websocket-protocol"})


def error(status: int, code: str, detail: str,
          headers: Mapping[str, str] | None = None) -> web.Response:
    """An error answered by the proxy itself, in the kit's JSON shape."""
    return web.json_response({"error": code, "detail": detail}, status=status,
                             headers={"X-Proxy-Error": code, **(headers or {})})


def forwarded_headers(request: web.BaseRequest, *, handshake: bool = False) -> dict[str, str]:
    """The request's end-to-end headers, plus the client's address in X-Forwarded-For.

    With `handshake`, its WebSocket handshake too: to ask an upstream that refused the upgrade
    again, as plain HTTP, for its refusal's body (aiohttp's WebSocket client drops it).
    """
    headers = {k: v for k, v in request.headers.items()
               if k.lower() not in NOT_FORWARDED and k.lower() not in WS_HANDSHAKE}
    if handshake:
        headers.update({k: v for k, v in request.headers.items() if k.lower() in WS_HANDSHAKE})
        headers.update({"Upgrade": "websocket", "Connection": "Upgrade"})
    headers["X-Forwarded-For"] = ", ".join(filter(None, [headers.get("X-Forwarded-For"),
                                                         request.remote or ""]))
    return headers


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
            response = error(status, "proxy_error", "The proxy failed while handling this "
                             "request; its log says why. Retry, or restart the proxy.")
        else:
            response = error(status, "bad_request", f"The proxy could not read the request "
                             f"as HTTP/1.1 ({first}); check the request line and headers.")
        response.force_close()
        return response


@dataclass
class ProxyStats:
    """The proxy's own counters in `/_proxy/stats` (each upstream and the streams add theirs)."""

    read_timeout: float
    buffering: str
    forwarded: int = 0  # requests sent upstream (a retry on another upstream counts again)
    in_flight: int = 0  # requests waiting for the upstream right now
    statuses: Counter[int] = field(default_factory=Counter)  # every status sent to clients
    gateway_timeouts: int = 0  # 504: the upstream said nothing for read_timeout seconds
    bad_gateways: int = 0  # 502: no upstream could be reached, or one closed mid-answer
    retried: int = 0  # requests sent again to the next upstream after a failed attempt
    cuts: int = 0
    connections_cut: int = 0
    started: float = field(default_factory=time.monotonic)

    def snapshot(self) -> dict[str, object]:
        return {
            "read_timeout_s": self.read_timeout, "buffering": self.buffering,
            "forwarded": self.forwarded, "in_flight": self.in_flight,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "gateway_timeouts": self.gateway_timeouts, "bad_gateways": self.bad_gateways,
            "retried": self.retried, "cuts": self.cuts, "connections_cut": self.connections_cut,
            "uptime_s": round(time.monotonic() - self.started, 3),
        }
