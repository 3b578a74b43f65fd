"""Use a server someone else started, such as the instructor's shared workshop server.

    server = connect("http://10.0.0.5:8000", token="SECRET")   # instead of launch(...)
    panel = Panel(server, "long")

The instructor runs `python -m servers.fastapi_server --host 0.0.0.0 --token SECRET`; everyone
reads events from it, and publishing needs the token. The object `connect()` returns is a
`ServerHandle`, like a launched `Server`: it offers what notebooks use (`url`, `kind`, `module`,
`options`, `trigger`, `stats`, `health`), but it cannot stop or restart a process that runs on
another machine.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests

from helpers.errors import PollError, PollingLabError, ServerNotReady, ServerUnavailable
from helpers.http import error_for, json_or_none, request, session_for
from helpers.launcher import ServerHandle
from helpers.tls import Verify, requests_verify


class RemoteServer(ServerHandle):
    """A bundled server that runs elsewhere: the calls a notebook makes to it, over HTTP."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 5.0,
                 verify: Verify = True) -> None:
        super().__init__(session_for(url))
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.verify = verify
        self._session.verify = requests_verify(verify)
        #: Start-up options are the instructor's; none are known, or changeable, from here.
        self.options: dict[str, Any] = {}
        self.kind = ""
        self.module = ""
        self._token = token

    def _connect(self) -> None:
        try:
            response = request("GET", self.url + "/health", session=self._session,
                               timeout=self.timeout, on_unreachable=self._not_found,
                               on_refusal=self._not_ours)
            health = json_or_none(response.json)
        except PollingLabError:
            self._session.close()
            raise
        name = health.get("server") if isinstance(health, dict) else None
        if not isinstance(health, dict) or health.get("status") != "ok" or (
                not isinstance(name, str)):
            self._session.close()
            raise self._not_ours(response)
        self.module = f"servers.{name}"
        self.kind = name.removesuffix("_server")  # "fastapi", "flask", "racy": launch() kinds

    def _not_found(self, exc: requests.RequestException) -> ServerNotReady:
        return ServerNotReady(
            f"No Polling Lab server answered at {self.url}/health: {exc}. Check the URL you "
            "were given (scheme, address and port, e.g. http://10.0.0.5:8000), that your "
            "machine can reach it (same network or VPN), and, behind a proxy, that the "
            "address is in NO_PROXY. To work on your own machine instead, use launch()."
        )

    def _not_ours(self, response: requests.Response) -> ServerNotReady:
        return ServerNotReady(
            f"{self.url}/health answered HTTP {response.status_code}, but not as a Polling "
            f"Lab server does ({response.text[:200]!r}). Check the URL and port you were "
            "given."
        )
    def _unreachable(self, path: str, exc: requests.RequestException) -> ServerUnavailable:
        return ServerUnavailable(
            f"The shared server at {self.url} did not answer {path}: {exc}. It may be "
            "restarting or out of reach; try again in a moment, and if it persists, "
            "tell the instructor."
        )

    def _refusal(self, path: str, response: requests.Response) -> PollingLabError:
        """A shared server's refusal: a 5xx says to try again, a 401 what to do about the token."""
        if response.status_code >= 500:
            return ServerUnavailable(f"The shared server at {self.url} answered {path} with HTTP "
                                     f"{response.status_code}; try again in a moment.")
        refused = error_for(response.status_code, json_or_none(response.json),
                            response.headers, fallback_code="http_error",
                            fallback_detail=response.text[:200])
        assert isinstance(refused, PollError)  # a status below 500
        detail = refused.detail
        if response.status_code == 401 and self._token is None:
            detail += " You connected without a token: use connect(url, token=...)."
        elif response.status_code == 401:
            detail += " The token you passed to connect() was refused; check it."
        return PollError(refused.status, refused.code, detail)

    def _publish_headers(self) -> dict[str, str]:
        """The token given to `connect()`, as `Authorization: Bearer <token>`."""
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def stop(self, timeout: float = 5.0) -> None:
        """Close this connection only: the server keeps running for everyone else.

        A server you did not start is not yours to stop; the instructor stops it (Ctrl+C in its
        terminal). `timeout` is accepted, and ignored, so that code written for a launched
        server runs unchanged.
        """
        with self._lock:
            self._session.close()

    def restart(self, **changes: Any) -> RemoteServer:
        """Always raises PollingLabError: a shared server cannot be restarted from here."""
        wanted = ", ".join(f"{k}={v!r}" for k, v in changes.items())
        raise PollingLabError(
            f"The server at {self.url} was started by someone else (connect(), not launch()), "
            "so this notebook cannot restart it"
            + (f" or change its options ({wanted})" if wanted else "")
            + ". Ask the instructor to restart it, or start a server of your own with "
            "launch(...) and use that instead."
        )

    def __repr__(self) -> str:
        token = ", with a token" if self._token else ""
        return f"<RemoteServer {self.kind} at {self.url}{token}>"


def connect(url: str, token: str | None = None, *, timeout: float = 5.0,
            verify: Verify = True) -> RemoteServer:
    """Connect to a running bundled server, such as the instructor's, instead of launching one.

    `token` is the one the server was started with (`--token`); it is needed to publish events
    on a server that listens beyond loopback. For an https server whose certificate a
    workshop CA signed, `verify` is the path of that CA's file (clients then take
    `verify=server.verify`); the default trusts the system's CAs. Returns a RemoteServer,
    which a notebook uses like the `Server` from `launch()`, except that `stop()` only closes
    the connection and `restart()` raises.

    Raises ServerNotReady, saying what to check, if nothing that looks like a Polling Lab server
    answers `url + "/health"` within `timeout` seconds. Raises ValueError for a URL that is not
    http(s)://host:port.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"connect() needs a URL like http://10.0.0.5:8000, not {url!r}.")
    server = RemoteServer(url, token, timeout=timeout, verify=verify)
    server._connect()
    return server
