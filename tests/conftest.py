"""Fixtures shared by the whole suite: in-process apps of both servers, and live servers.

In-process clients (Flask's `test_client()`, Starlette's `TestClient`) test the API's logic;
`helpers.launch()` starts a real server process only where timing or processes are the point.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import helpers
from helpers import Server, launch
from servers import fastapi_server, flask_server
from servers.startup import ServerConfig

with warnings.catch_warnings():
    # Starlette 1.x prefers the httpx2 fork and warns once, on import, when it finds httpx.
    warnings.filterwarnings("ignore", message=r".*install `httpx2` instead")
    from starlette.testclient import TestClient

KINDS = ("flask", "fastapi", "lean")  # lean: the FastAPI app with --lean
_UNSET: Any = object()


@dataclass
class Reply:
    """One response from an in-process app, the same shape whichever framework served it."""

    status: int
    headers: Mapping[str, str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class InProcessApi:
    """One server's app behind its framework's in-process test client."""

    def __init__(self, kind: str, config: ServerConfig) -> None:
        self.kind = kind
        self.config = config
        if kind == "flask":
            self.app: Any = flask_server.create_app(config)
            self._client: Any = None
            self.log = self.app.extensions["polling_lab"]["log"]
        else:
            self.app = fastapi_server.create_app(config, lean=kind == "lean")
            # One portal (one event loop) for every request, as under uvicorn: a held poll and
            # the trigger that wakes it must share a loop. 5xx become replies, not exceptions.
            self._client = TestClient(self.app, raise_server_exceptions=False)
            self._client.__enter__()
            self.log = self.app.state.log

    def close(self) -> None:
        if self.kind != "flask":
            self._client.__exit__(None, None, None)

    def request(self, method: str, path: str, *, params: Mapping[str, object] | None = None,
                body: bytes | None = None, json_body: Any = _UNSET,
                headers: Mapping[str, str] | None = None) -> Reply:
        headers = dict(headers or {})
        if json_body is not _UNSET:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        query = {k: str(v) for k, v in (params or {}).items()}
        if self.kind == "flask":
            # A test client per request, so that threads can hold polls side by side.
            r = self.app.test_client().open(path, method=method, query_string=query, data=body,
                                  headers=headers)
            return Reply(r.status_code, r.headers, r.get_data())
        r = self._client.request(method, path, params=query, content=body, headers=headers)
        return Reply(r.status_code, r.headers, r.content)

    def get(self, path: str, **params: object) -> Reply:
        return self.request("GET", path, params=params)

    def trigger(self, message: Any = _UNSET, **params: object) -> Reply:
        json_body = _UNSET if message is _UNSET else {"message": message}
        return self.request("POST", "/trigger_event", params=params, json_body=json_body)

    def publish(self, n: int) -> list[dict[str, Any]]:
        events = []
        for i in range(n):
            reply = self.trigger(f"event {i + 1}")
            assert reply.status == 201, reply.content
            events.append(reply.json()["event"])
        return events

    def stats(self) -> dict[str, Any]:
        reply = self.get("/stats")
        assert reply.status == 200
        stats: dict[str, Any] = reply.json()
        return stats


@pytest.fixture
def make_api() -> Iterator[Callable[..., InProcessApi]]:
    """`make_api("flask" | "fastapi", **ServerConfig fields)`: an app with its test client."""
    made: list[InProcessApi] = []

    def make(kind: str, **config: Any) -> InProcessApi:
        api = InProcessApi(kind, ServerConfig(**{"hold": 0.5, **config}))
        made.append(api)
        return api

    yield make
    for api in made:
        api.close()


@pytest.fixture(params=KINDS)
def api(request: pytest.FixtureRequest, make_api: Callable[..., InProcessApi]) -> InProcessApi:
    """Each server's app in turn, with a short default hold.

    The naive (Flask) server checks for new events every 20 ms, so that a held poll is woken
    promptly; test_flask_server.py measures what its real check interval costs. The FastAPI app
    ignores `check_interval`.
    """
    return make_api(request.param, check_interval=0.02)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    """Threads for requests that must run while the test does something else."""
    with ThreadPoolExecutor(max_workers=8) as executor:
        yield executor


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, what: str = "condition",
               *, interval: float = 0.01) -> None:
    """helpers.wait_until, failing the test with `what` after `timeout` s."""
    if not helpers.wait_until(predicate, timeout, interval):
        pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


@pytest.fixture
def waiter() -> Callable[..., None]:
    return wait_until


# --- live servers -----------------------------------------------------------------------------

#: pids of servers that fixtures wider than one test keep running on purpose.
SHARED_PIDS: set[int] = set()


@pytest.fixture(scope="session")
def shared_pids() -> set[int]:
    """SHARED_PIDS, for a wide fixture in another folder: `from conftest import` would reach
    whichever conftest module pytest imported first under that name (tests/broker's, in a full
    run), so it is handed over as a fixture instead."""
    return SHARED_PIDS


def server_children() -> set[int]:
    """pids of bundled-server processes (zombies included) whose parent is this process."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and b"servers." in cmdline:
            found.add(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def no_server_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """A live test must stop every server it started (its fixtures' teardown included)."""
    if request.node.get_closest_marker("live") is None:
        yield
        return
    before = server_children()
    yield
    left = server_children() - before - SHARED_PIDS
    assert not left, f"server processes left running after the test: {sorted(left)}"


@pytest.fixture
def launched() -> Iterator[Callable[..., Server]]:
    """`launched(kind, **options)`: `helpers.launch()`, stopped when the test ends."""
    servers: list[Server] = []

    def start(kind: str = "asyncio", **options: Any) -> Server:
        if kind == "lean":  # the asyncio server, its long poll answered in raw ASGI (--lean)
            kind, options = "asyncio", {**options, "lean": True}
        server = launch(kind, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _shared(kind: str, **options: Any) -> Iterator[Server]:
    server = launch(kind, **options)
    SHARED_PIDS.add(server.pid)
    try:
        yield server
    finally:
        server.stop()
        SHARED_PIDS.discard(server.pid)


@pytest.fixture(scope="session")
def asyncio_server() -> Iterator[Server]:
    """One FastAPI server for tests that only look at events after their own start."""
    yield from _shared("asyncio", hold=5)


@pytest.fixture(scope="session")
def naive_server() -> Iterator[Server]:
    """One threaded Flask server (naive long poll, 50 ms naps), shared like `asyncio_server`."""
    yield from _shared("naive", hold=5, check_interval=0.05)
