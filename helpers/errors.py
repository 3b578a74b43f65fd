"""The kit's own exceptions. Low-level `requests`, `aiohttp` and OS errors are translated into
these in one place each (the launcher and the clients), with the original attached as
`__cause__`, so a notebook only ever needs to catch `PollingLabError`."""

from __future__ import annotations


class PollingLabError(Exception):
    """Base class of every error the kit raises on purpose."""


class ServerNotReady(PollingLabError):
    """`launch()` could not get a server to answer `/health`: it exited, or never became ready.

    The message ends with the tail of the server's log, which usually says why.
    """


class ServerUnavailable(PollingLabError):
    """A request failed in a way worth retrying: no connection, a read timeout, or a 5xx."""

    def __init__(self, message: str, *, retry_after: float | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status  # the HTTP status of a 5xx answer; None when no answer came


class RateLimited(ServerUnavailable):
    """A gateway answered 429: this client asked too often. Wait `retry_after` seconds, then
    ask again; nothing is wrong with the server, so the kit's clients do not back off further.
    """


class PollError(PollingLabError):
    """The server refused a request (a 4xx other than 410). Retrying the same request won't help.

    `status`, `code` and `detail` come from the server's JSON error body.
    """

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"HTTP {status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail

    def __reduce__(self) -> tuple[type[PollError], tuple[int, str, str]]:
        # Pickled with its own arguments: a swarm's clients, in their own process, send these.
        return type(self), (self.status, self.code, self.detail)


class UntrustedCertificate(PollingLabError):
    """A TLS handshake failed: the server's certificate is not signed by a CA this client trusts.

    The message says which server, and what to pass: `verify=server.ca_file` for a server that
    `launch(..., tls=True)` started. Retrying won't help; turning verification off is never the fix.
    """
