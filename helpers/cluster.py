"""Several servers behind the bundled gateway, launched together: `launch_cluster(3)`.

    with launch_cluster(3, token="s3cret", rate_limit=50) as cluster:
        LongPollClient(cluster.url)        # every request goes through the gateway
        cluster.trigger("hello")           # a publish through the gateway (with the token)
        cluster.kill(1)                    # SIGKILL server 1: it leaves the rotation within 1 s
        cluster.restart(1)                 # the same port again: it comes back into rotation

Every process is started by `helpers.launch`, so each dies with the kernel and is stopped by
its PID. The gateway is `python -m servers.proxy` with one `--upstream` per server.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

from helpers.http import publish_with_retries, request
from helpers.launcher import Server, launch, launch_all
from helpers.processes import kill_process_group


class Cluster:
    """`n` launched servers and the gateway in front of them.

    `url` is the gateway's: give it to clients. `servers` are the Server handles (reach one
    directly with `servers[i].url`), `gateway` the proxy's handle. Use it as a context manager,
    or call `stop()`.
    """

    def __init__(self, servers: list[Server], gateway: Server, token: str | None) -> None:
        self.servers = servers
        self.gateway = gateway
        self.token = token

    @property
    def url(self) -> str:
        return self.gateway.url

    def publish_headers(self) -> dict[str, str]:
        """The headers a publish through the gateway needs: its token, when it has one."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def trigger(self, message: str | None = None) -> dict[str, Any]:
        """Publish one event through the gateway (with its token) and return the event.

        Retried with one Idempotency-Key, like `Server.trigger`, after Retry-After on a 429.
        Raises ServerUnavailable when no server answered (RateLimited when the gateway kept
        answering 429), PollError when the gateway or the server refused it (401: the token).
        """
        body = {} if message is None else {"message": message}
        response = publish_with_retries(lambda idempotency: request(
            "POST", self.url + "/trigger_event", json=body,
            headers={**self.publish_headers(), **idempotency}))
        event: dict[str, Any] = response.json()["event"]
        return event

    def gateway_stats(self) -> dict[str, Any]:
        """The gateway's `/_proxy/stats`: per-upstream counts and health, 429s, streams."""
        stats: dict[str, Any] = request("GET", self.url + "/_proxy/stats").json()
        return stats

    def healthy(self) -> list[bool]:
        """Whether each server is in the gateway's rotation now, in the order of `servers`."""
        return [bool(u["healthy"]) for u in self.gateway_stats()["upstreams"]]

    def kill(self, i: int) -> None:
        """SIGKILL server `i`, as a crash would: no goodbye to its clients."""
        process = self.servers[i].process
        if process is not None:
            kill_process_group(process)

    def restart(self, i: int, **changes: Any) -> Server:
        """Start server `i` again on the same port (the gateway knows it by its URL)."""
        return self.servers[i].restart(**changes)

    def stop(self) -> None:
        """Stop the gateway, then every server."""
        self.gateway.stop()
        for server in self.servers:
            server.stop()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Cluster of {len(self.servers)} behind {self.url}>"


def launch_cluster(n: int, *, kind: str = "asyncio", broker: str | None = None,
                   token: str | None = None, rate_limit: float | None = None,
                   gateway_options: Mapping[str, Any] | None = None,
                   **server_options: Any) -> Cluster:
    """Start `n` servers of `kind` and the bundled gateway in front of them; return the Cluster.

    `broker` (a redis:// URL) is given to every server, so they share one event log; without
    it each keeps its own, which is the bug notebook 08 shows. `token` guards publishes at the
    gateway (POST /trigger_event and WebSocket publish frames); `rate_limit` is requests per
    second per client (the `X-Client-Id` header, else the address, which every client on this
    machine shares). `gateway_options` go to the proxy (`read_timeout`, `buffering`,
    `rate_burst`), `server_options` to every server (`hold`, `store`, ...).

    The servers start side by side, then the gateway. Raises ValueError for n < 1, and
    ServerNotReady if a process does not start; whatever was started is stopped then.
    """
    if n < 1:
        raise ValueError(f"a cluster needs at least 1 server, not {n}")
    # Side by side (launch_all): the gateway needs their ports, so it starts once they are up.
    servers = launch_all([(kind, {"broker": broker, **server_options})] * n)
    try:
        gateway = launch("proxy", upstream=[s.url for s in servers], token=token,
                         rate_limit=rate_limit, **dict(gateway_options or {}))
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return Cluster(servers, gateway, token)
