"""The one place where a synchronous request to a kit server is made and its errors translated.

    response = request("GET", server.url + "/stats")        # a requests.Response, status < 400
    with KeptConnection(lambda: server.url) as connection:  # one kept-open connection
        answer = connection.request("POST", "/trigger_event", json_body={"message": "hi"})

Whatever goes wrong becomes one of the kit's exceptions (`helpers.errors`), with the original
attached as `__cause__`:

* no answer (refused, reset, timed out) -> `ServerUnavailable`;
* an HTTP error answer -> `error_for()`: a 5xx is `ServerUnavailable` (worth retrying, with its
  `Retry-After`), a 4xx is `PollError` with the server's JSON `error` code and `detail`.

A caller that knows more (the launcher knows the server's log, a shared server's caller may lack
a token) passes its own `unreachable` or `refusal` to say what to do next.
"""

from __future__ import annotations

import http.client
import json
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from requests.structures import CaseInsensitiveDict

from helpers.errors import PollError, PollingLabError, RateLimited, ServerUnavailable
from servers.contract import LOOPBACK

DEFAULT_TIMEOUT_S = 5.0
IDEMPOTENCY_HEADER = "Idempotency-Key"  # the kit's extension to POST /trigger_event
PUBLISH_TRIES = 3

_T = TypeVar("_T")


def publish_with_retries(send: Callable[[dict[str, str]], _T], *, tries: int = PUBLISH_TRIES,
                         base_delay: float = 0.2,
                         retry_on: tuple[type[PollingLabError], ...] = (ServerUnavailable,),
                         ) -> _T:
    """Call `send(headers)` for one publish, retrying it safely; return what `send` returns.

    `headers` carry an `Idempotency-Key`: one new key per publish, the same on every retry of
    it, so a retry of a publish that did reach the server (its answer was lost or late) is
    answered with the same event instead of publishing again. A `ServerUnavailable` (no answer,
    a timeout, a 5xx) is retried up to `tries` times in all, with a doubling jittered pause
    (at least `Retry-After`), then raised. A `PollError` (a 4xx, such as 422
    `idempotency_key_reused` or 400 `bad_idempotency_key`) is raised at once: it is a bug.
    `retry_on` names the exceptions worth retrying, for a caller that translates "no answer"
    into its own (the launcher's ServerNotReady).
    """
    headers = {IDEMPOTENCY_HEADER: uuid.uuid4().hex}
    for attempt in range(1, tries + 1):
        try:
            return send(headers)
        except retry_on as exc:
            if attempt == tries:
                raise
            delay = random.uniform(base_delay, 2 * base_delay) * 2 ** (attempt - 1)
            retry_after = exc.retry_after if isinstance(exc, ServerUnavailable) else None
            time.sleep(max(delay, retry_after or 0))
    raise AssertionError("unreachable: the last try returns or raises")


def session_for(url: str) -> requests.Session:
    """A `requests.Session` for `url`; for a loopback URL it ignores HTTP_PROXY and friends.

    A corporate proxy set in the environment cannot reach 127.0.0.1 on this machine, and
    without this every request to a bundled server would be sent to it and fail. A server
    elsewhere (a shared workshop server) may need that proxy, so it keeps the environment's.
    """
    session = requests.Session()
    session.trust_env = urlsplit(url).hostname not in LOOPBACK
    return session


def loopback_session() -> requests.Session:
    """A Session for the kit's own servers on this machine, which ignores HTTP_PROXY."""
    return session_for("http://127.0.0.1")


def error_for(status: int, body: Any, headers: Mapping[str, str], *,
              fallback_detail: str = "", fallback_code: str = "error") -> PollingLabError:
    """The kit's exception for an HTTP error answer (`status` >= 400) whose JSON is `body`.

    A 5xx is `ServerUnavailable` ("HTTP 503: <detail>", with `retry_after` from the
    `Retry-After` header), a 429 `RateLimited` (a ServerUnavailable: retried after Retry-After,
    1 s if it has none); anything else is `PollError(status, code, detail)`. `body` is the
    parsed JSON (anything that is not a dict counts as no body); `fallback_detail` and
    `fallback_code` are used where it has no `detail` or `error`.
    """
    fields = body if isinstance(body, dict) else {}
    detail = str(fields.get("detail") or fallback_detail or f"HTTP {status}")
    if status == 429:
        return RateLimited(f"HTTP 429: {detail}", status=status,
                           retry_after=retry_after_s(headers.get("Retry-After")) or 1.0)
    if status >= 500:
        retry_after = headers.get("Retry-After")
        return ServerUnavailable(f"HTTP {status}: {detail}", status=status,
                                 retry_after=float(retry_after) if retry_after else None)
    return PollError(status, str(fields.get("error") or fallback_code), detail)


def retry_after_s(value: str | None) -> float | None:
    """A `Retry-After` of delay-seconds as a float; None for none, or an HTTP date."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def json_or_none(payload: Callable[[], Any]) -> Any:
    """`payload()` (a response's `.json`), or None if the body is not JSON."""
    try:
        return payload()
    except ValueError:
        return None


def refusal(response: requests.Response) -> PollingLabError:
    """`error_for` a `requests.Response`: the server's JSON error, or its reason phrase."""
    return error_for(response.status_code, json_or_none(response.json), response.headers,
                     fallback_detail=response.reason or "no detail")


def unreachable(method: str, url: str, exc: requests.RequestException) -> PollingLabError:
    """The default exception for a request that got no answer: `ServerUnavailable`."""
    return ServerUnavailable(f"{method} {url} got no answer: {type(exc).__name__}: {exc}")


def request(method: str, url: str, *, session: requests.Session | None = None,
            timeout: float | tuple[float, float] = DEFAULT_TIMEOUT_S,
            on_unreachable: Callable[[requests.RequestException], PollingLabError] | None = None,
            on_refusal: Callable[[requests.Response], PollingLabError] | None = None,
            **kwargs: Any) -> requests.Response:
    """Send one request to a kit server and return its response, whose status is below 400.

    `session` is used if given (the caller serialises its use across threads); otherwise a
    fresh `session_for(url)` is made and closed. `kwargs` go to `requests` (`json`, `params`,
    `headers`). Raises `on_unreachable(exc)` (default: `unreachable`, a ServerUnavailable) when
    no answer came, and `on_refusal(response)` (default: `refusal`) for a status of 400 or more.
    """
    own = session is None
    used = session_for(url) if session is None else session
    try:
        try:
            response = used.request(method, url, timeout=timeout, **kwargs)
        except requests.RequestException as exc:
            raise (on_unreachable(exc) if on_unreachable else
                   unreachable(method, url, exc)) from exc
    finally:
        if own:
            used.close()
    if response.status_code >= 400:
        raise (on_refusal or refusal)(response)
    return response


@dataclass(frozen=True)
class Answer:
    """One complete response read from a `KeptConnection`."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body, parsed as JSON (raises ValueError if it is not)."""
        return json.loads(self.body)


class KeptConnection:
    """One kept-open HTTP/1.1 connection to a kit server, used by one thread at a time.

    Cheaper than a `requests.Session` per call for a loop that asks many times a second (a
    publisher, a stats sampler), and the address is read from `url()` before every request,
    so a server restarted on another port is followed. Errors are translated as `request()`
    translates them.
    """

    def __init__(self, url: Callable[[], str] | str, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self._url = url if callable(url) else (lambda: url)
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._address: tuple[str, int] | None = None

    def request(self, method: str, path: str, *, body: bytes | None = None,
                json_body: Any = None, headers: Mapping[str, str] | None = None) -> Answer:
        """Send one request and return its `Answer`, whose status is below 400.

        Raises ServerUnavailable if no answer came, and `error_for(...)` for an HTTP error.
        """
        sent_headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
        if body is not None:
            sent_headers.setdefault("Content-Type", "application/json")
        try:
            answer = self._send(method, path, body, sent_headers)
        except (OSError, http.client.HTTPException) as exc:
            raise ServerUnavailable(f"{method} {self._url()}{path} got no answer: "
                                    f"{type(exc).__name__}: {exc}") from exc
        if answer.status >= 400:
            try:
                parsed = answer.json()
            except ValueError:
                parsed = None
            raise error_for(answer.status, parsed, answer.headers,
                            fallback_detail=answer.body[:200].decode("utf-8", "replace"))
        return answer

    def _send(self, method: str, path: str, body: bytes | None,
              headers: dict[str, str]) -> Answer:
        url = urlsplit(self._url())  # read each time: a restart may change the port
        address = (url.hostname or "127.0.0.1", url.port or 80)
        conn = self._conn
        fresh = conn is None or address != self._address
        if conn is None or fresh:
            self.close()
            conn = self._conn = http.client.HTTPConnection(*address, timeout=self.timeout)
            self._address = address
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return Answer(response.status, CaseInsensitiveDict(response.getheaders()),
                          response.read())
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            self.close()
            if fresh:
                raise
            # uvicorn closes a keep-alive connection after 5 idle seconds; the request never
            # reached the app, so sending it again on a new connection sends it once.
            return self._send(method, path, body, headers)
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def close(self) -> None:
        """Close the connection; the next request opens a new one."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> KeptConnection:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
