"""Friendly checks for the exercises at the end of each notebook."""

from __future__ import annotations

import html
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from IPython.display import HTML, display

from helpers.launcher import launch


def check(ok: bool, *, success: str, hint: str) -> bool:
    """Show a green "passed" with `success`, or a "not yet" with `hint`; return `ok`.

    Never raises: a learner who has not tried yet gets a hint, not a traceback.
    """
    if ok:
        display(HTML(f"<div style='color:#16794a'>✅ <b>Passed.</b> {success}</div>"))
    else:
        display(HTML(f"<div style='color:#9a6700'>🟡 <b>Not yet.</b> Hint: {hint}</div>"))
    return bool(ok)


QUIET_HOLDS = 2.5  # how long the check stays quiet, in holds
DOWN_S = 1.5  # how long the server is down
DOWN_ATTEMPTS = 10  # at most this many reconnects while it is down: more is no backoff

#: What the learner writes: long-poll `url` with holds of `hold` seconds, call `on_event(event)`
#: once per event in order, and return soon after `stop` is set.
ClientFunction = Callable[[str, float, Callable[[dict[str, Any]], None], threading.Event], None]


@dataclass
class _Sent:
    at: float
    path: str
    hold: float | None  # the `timeout` the request asked the server for, if any
    read_timeout: float | None  # the client's own read timeout, None for none at all
    failed: bool  # no answer: connection refused, reset or timed out


@dataclass
class _Recorder:
    """Every request `requests` sends to one URL while the check runs, as it is sent."""

    url: str
    sent: list[_Sent] = field(default_factory=list)

    def __enter__(self) -> _Recorder:
        original = self._original = requests.adapters.HTTPAdapter.send
        recorder = self

        def send(adapter: requests.adapters.HTTPAdapter, request: requests.PreparedRequest,
                 *args: Any, **kwargs: Any) -> requests.Response:
            if not str(request.url).startswith(recorder.url):
                return original(adapter, request, *args, **kwargs)
            parts = urlsplit(str(request.url))
            asked = parse_qs(parts.query).get("timeout")
            timeout = kwargs.get("timeout", args[1] if len(args) > 1 else None)
            read = timeout[1] if isinstance(timeout, tuple) else timeout
            sent = _Sent(time.monotonic(), parts.path, float(asked[0]) if asked else None,
                         None if read is None else float(read), failed=True)
            recorder.sent.append(sent)
            response = original(adapter, request, *args, **kwargs)
            sent.failed = False
            return response

        requests.adapters.HTTPAdapter.send = send  # type: ignore[method-assign, assignment]
        return self

    def __exit__(self, *exc_info: object) -> None:
        requests.adapters.HTTPAdapter.send = self._original  # type: ignore[method-assign]

    def between(self, start: float, end: float) -> list[_Sent]:
        return [s for s in self.sent if start <= s.at < end]


@dataclass(frozen=True)
class Verdict:
    """One line of a client check: what was measured, whether it passed, and what to try."""

    ok: bool
    what: str
    hint: str


def check_client(client: ClientFunction | None, *, hold: float = 1.0) -> bool:
    """Run the learner's long-poll client against a real server, and show how it did, line by
    line (see `run_client_check`). Returns True when every line passed; never raises for the
    learner's mistakes."""
    if not callable(client):
        return check(False, success="", hint="define my_client(url, hold, on_event, stop) in "
                     "the cell above, then run this cell again.")
    verdicts = run_client_check(client, hold=hold)
    rows = "".join(
        f"<li>{'✅' if v.ok else '❌'} {html.escape(v.what)}"
        + ("" if v.ok else f"<br><i>Hint: {html.escape(v.hint)}</i>") + "</li>"
        for v in verdicts)
    display(HTML(f"<ul style='list-style:none;padding-left:0'>{rows}</ul>"))
    return check(all(v.ok for v in verdicts), success="Your client is a correct long-poll client.",
                 hint="fix the lines marked ❌ above, then run this cell again.")


def run_client_check(client: ClientFunction, *, hold: float = 1.0) -> list[Verdict]:
    """Run `client` against a real server and measure it; one Verdict per rule.

    The check starts an asyncio server with a durable log, runs `client(url, hold, on_event,
    stop)` in a thread, publishes events, stays quiet for a while, stops the server for 1.5 s
    and starts it again on the same port, then publishes more. It reports, line by line:
    every event received exactly once and in order; a read timeout longer than the hold; no
    busy loop while nothing happens; a backoff while the server is down; a return after
    `stop`. An exception from `client` is caught and reported in the first line.
    """
    received: list[int] = []
    crashed: list[BaseException] = []
    stop = threading.Event()

    def run() -> None:
        try:
            client(server.url, hold, lambda event: received.append(int(event["id"])), stop)
        except BaseException as exc:  # the learner's error, shown below, not in a thread
            crashed.append(exc)

    def wait_for(count: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while len(received) < count and not crashed and time.monotonic() < deadline:
            time.sleep(0.02)

    with tempfile.TemporaryDirectory(prefix="polling-lab-check-") as folder, \
            launch("asyncio", hold=hold, store=f"sqlite:{Path(folder) / 'events.db'}") as server, \
            _Recorder(server.url) as recorder:
        thread = threading.Thread(target=run, name="your-client", daemon=True)
        thread.start()
        time.sleep(0.3)  # let its first poll arrive
        for n in range(5):
            server.trigger(f"before the quiet spell #{n + 1}")
            time.sleep(0.05 + 0.05 * n)
        wait_for(5, 5.0)
        quiet: list[_Sent] = []
        down: list[_Sent] = []
        if not crashed:  # the unwritten exercise raises at once: no need to go on
            quiet_from = time.monotonic()
            time.sleep(QUIET_HOLDS * hold)
            quiet = recorder.between(quiet_from, time.monotonic())
            server.stop()
            down_from = time.monotonic()
            time.sleep(DOWN_S)
            down = recorder.between(down_from, time.monotonic())
            server.restart()
            for n in range(5):
                server.trigger(f"after the restart #{n + 1}")
            wait_for(10, hold + 12.0)
        stop.set()
        thread.join(hold + 6.0)
    polls = [s for s in recorder.sent if s.path == "/poll_for_updates"]
    return _verdicts(received, crashed, polls, quiet, down, thread.is_alive(), hold)


def _verdicts(received: list[int], crashed: list[BaseException], polls: list[_Sent],
              quiet: list[_Sent], down: list[_Sent], still_running: bool,
              hold: float) -> list[Verdict]:
    quiet_budget = int(QUIET_HOLDS) + 3  # a correct client sends one poll per hold
    short_reads = [s for s in polls
                   if s.read_timeout is None or s.read_timeout <= (s.hold or hold)]
    return [Verdict(*line) for line in [
        (received == list(range(1, 11)) and not crashed,
         f"every event exactly once and in order: you received ids {received or 'none'}",
         "keep last_event_id from the newest event you received, and send it on every poll"
         if not crashed else f"your client raised {type(crashed[0]).__name__}: {crashed[0]}"),
        (bool(polls) and not short_reads,
         "a read timeout longer than the hold on every long poll",
         "pass timeout=(connect, hold + 5) to session.get: a read timeout at or below the hold "
         "cuts off an answer the server is about to send"),
        (bool(polls) and len(quiet) <= quiet_budget,
         f"no busy loop while nothing happens: {len(quiet)} requests in "
         f"{QUIET_HOLDS * hold:g} s of quiet with a {hold:g} s hold",
         "ask the server to hold the request (params timeout=hold) and send the next poll "
         "only when the answer (200 or 204) has come"),
        (bool(polls) and len(down) <= DOWN_ATTEMPTS,
         f"a backoff while the server was down: {len(down)} attempts in {DOWN_S:g} s",
         "after a requests.ConnectionError, sleep before retrying, longer each time, with "
         "jitter: time.sleep(random.uniform(0, min(5, 0.1 * 2 ** failures)))"),
        (not still_running,
         "your client returned once stop was set",
         "check stop.is_set() in your loop's condition"),
    ]]
