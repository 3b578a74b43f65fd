"""Start a bundled server in its own process, and make sure it never outlives the kernel.

    with launch("asyncio") as server:
        server.trigger("hello")

The server runs in a new session (process group), so the kernel's stop button (SIGINT to the
kernel's group) does not reach it. It asks Linux to send it SIGTERM when the launching thread
dies, so a restarted or killed kernel takes it along, and an `atexit` hook stops it on a normal
exit. Its output goes to a log file, never into cell output.
"""

from __future__ import annotations

import abc
import atexit
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, TypeVar

import requests

from helpers.errors import PollingLabError, ServerNotReady, ServerUnavailable
from helpers.http import loopback_session, publish_with_retries, refusal, request
from helpers.kinds import find_kind, kind_of_module
from helpers.processes import (
    StartedProcess,
    cpu_seconds,
    free_port,
    signal_group,
    stop_process_group,
)
from helpers.tls import Certificate, Verify, throwaway_certificate
from servers.startup import ServerConfig

PROJECT_ROOT = Path(__file__).resolve().parent.parent

_READY_LINE = re.compile(rb"serving on (https?://\S+)")
_running: set[Server] = set()
_log_dir: Path | None = None


def default_log_dir() -> Path:
    """The folder server logs go to unless `launch(log_dir=...)` says otherwise.

    One temporary folder per kernel, made on first use, so logs never land in cell output.
    """
    global _log_dir
    if _log_dir is None:
        _log_dir = Path(tempfile.mkdtemp(prefix="polling-lab-logs-"))
    return _log_dir


def _flags(options: dict[str, Any]) -> list[str]:
    """Turn launch() keyword options into the server's command-line flags."""
    flags: list[str] = []
    for key, value in options.items():
        if value is None or key == "tls":  # tls=True: Server.start passes the certificate
            continue
        if key == "threaded":
            flags.append("--threaded" if value else "--single-threaded")
        elif isinstance(value, bool):  # a switch such as lean=True: present or absent
            flags += [f"--{key.replace('_', '-')}"] if value else []
        elif isinstance(value, (list, tuple)):  # a repeatable flag: upstream=[a, b]
            for item in value:
                flags += [f"--{key.replace('_', '-')}", str(item)]
        else:
            flags += [f"--{key.replace('_', '-')}", str(value)]
    return flags


def child_env() -> dict[str, str]:
    """The environment of a process the kit starts: it can import `servers`, and it knows its
    launcher's pid, so `servers.startup.die_with_parent` can ask Linux to stop it with us."""
    return {**os.environ, "POLLING_LAB_PARENT_PID": str(os.getpid()),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT),
                                                        os.environ.get("PYTHONPATH")]))}


_Handle = TypeVar("_Handle", bound="ServerHandle")


class ServerHandle(abc.ABC):
    """A bundled server as a notebook uses it, whether `launch()` started it or `connect()`
    reached it: its `url`, `kind`, `module` and start `options`, and `trigger`, `stats` and
    `health` over HTTP. Use it as a context manager, or call `stop()`.

    Every call goes through `_call`, which sends it with `helpers.http.request`, the kit's one
    translation of errors: `_unreachable` says what to check for a request that got no answer,
    `_refusal` turns an HTTP error into the kit's exception.
    """

    url: str
    kind: str
    module: str
    options: dict[str, Any]
    timeout: float = 5.0  # seconds each call may take
    #: What a client checks this server's certificate against (`helpers.tls.Verify`): the
    #: system's CAs, or for a server `launch(..., tls=True)` started, its throwaway CA's file.
    verify: Verify = True

    def __init__(self, session: requests.Session) -> None:
        self._session = session
        self._lock = threading.Lock()  # requests.Session is not documented as thread-safe

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        with self._lock:
            return request(method, self.url + path, session=self._session,
                           timeout=self.timeout,
                           on_unreachable=lambda exc: self._unreachable(path, exc),
                           on_refusal=lambda response: self._refusal(path, response),
                           **kwargs)

    @abc.abstractmethod
    def _unreachable(self, path: str, exc: requests.RequestException) -> PollingLabError:
        """The exception for a call to `path` that got no answer, saying what to check."""

    def _refusal(self, path: str, response: requests.Response) -> PollingLabError:
        """Turn a server's JSON error into the kit's exception, keeping its code and detail."""
        return refusal(response)

    @property
    def check_interval(self) -> float | None:
        """The naive server's sleep between checks, in seconds; None for a server that is woken.

        An event waits for the next check, so this sets the naive long poll's latency.
        """
        kind = kind_of_module(self.module)
        if kind is None or not kind.sleeps:
            return None
        return float(self.options.get("check_interval") or ServerConfig.check_interval)

    def _publish_headers(self) -> dict[str, str]:
        """Headers for POST /trigger_event: none for a server this kernel launched."""
        return {}

    def trigger(self, message: str | None = None) -> dict[str, Any]:
        """Publish one event and return it (`id`, `timestamp`, `message`).

        A publish that gets no answer, times out or gets a 5xx is retried (3 tries in all) with
        the same `Idempotency-Key`, so it publishes once. Raises ServerUnavailable (or, for a
        launched server, ServerNotReady) when every try failed, and PollError if the server
        refuses it: on a server reached with `connect()`, status 401 when the server wants a
        token and the one given is missing or wrong.
        """
        body = {} if message is None else {"message": message}
        response = publish_with_retries(lambda idempotency: self._call(
            "POST", "/trigger_event", json=body,
            headers={**self._publish_headers(), **idempotency}),
            retry_on=(ServerUnavailable, ServerNotReady))
        event: dict[str, Any] = response.json()["event"]
        return event

    def stats(self) -> dict[str, Any]:
        """The server's `/stats` counters (requests, waiting polls, threads, RSS, ...).

        On a shared server, other learners' requests count there too.
        """
        stats: dict[str, Any] = self._call("GET", "/stats").json()
        return stats

    def health(self) -> dict[str, Any]:
        """The server's `/health` answer: `status`, `server` (its module) and `stream`."""
        health: dict[str, Any] = self._call("GET", "/health").json()
        return health

    @abc.abstractmethod
    def stop(self, timeout: float = 5.0) -> None:
        """Stop using the server (a launched one is stopped, a connected one is not)."""

    @abc.abstractmethod
    def restart(self, **changes: Any) -> ServerHandle:
        """Start the server again with `changes` applied to its options."""

    def __enter__(self: _Handle) -> _Handle:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class Server(StartedProcess, ServerHandle):
    """A running bundled server: its `url`, its log, and the calls a notebook makes to it.

    `launch()` makes one and starts it. `module` runs a variant of the kind's server instead of
    its own module (the scaling lesson's profiling server, which takes the same flags).
    """

    def __init__(self, kind: str, *, host: str, port: int, ready_timeout: float,
                 log_dir: Path, options: dict[str, Any], module: str | None = None) -> None:
        self.kind = kind
        self.module = module or find_kind(kind).module  # raises ValueError for an unknown kind
        self.host, self.port = host, port
        self._port_picked = False  # True once the kit picked the port (launch's port=0)
        self.ready_timeout = ready_timeout
        self.log_dir = log_dir
        self.options = options
        self.url = ""
        self.log_path = log_dir / "not-started.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.certificate: Certificate | None = None  # made on the first start with tls=True
        super().__init__(loopback_session())

    @property
    def ca_file(self) -> Path | None:
        """The throwaway CA a client must trust (`verify=server.ca_file`); None without TLS."""
        return self.certificate.ca_file if self.certificate else None

    def _tls_flags(self) -> list[str]:
        """`--tls CERT KEY` when the options ask for TLS; one certificate for every restart."""
        if not self.options.get("tls"):
            self.verify = True
            return []
        if self.certificate is None:
            self.certificate = throwaway_certificate(Path(tempfile.mkdtemp(
                prefix=f"{self.kind}-tls-", dir=self.log_dir)))
        self.verify = self.certificate.ca_file
        self._session.verify = str(self.certificate.ca_file)
        return self.certificate.server_flags()

    def start(self) -> None:
        """Start the process and return once it answers `/health` (see `launch()`).

        Raises ServerNotReady, with the tail of its log, if it exits or does not get ready in
        `ready_timeout` seconds; the process is stopped then.
        """
        self.spawn()
        self.wait_ready()

    def spawn(self) -> None:
        """Start the process and return at once, without waiting for it to get ready.

        `start()` is `spawn()` then `wait_ready()`. `launch_all` spawns several servers one
        after another and then waits for them, so that they import and bind side by side. A
        server dies with the thread that spawned it, so spawn from a thread that lives on.
        """
        raise_open_file_limit()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:  # the kit picks, below the ports outgoing connections take
            self.port, self._port_picked = free_port(self.host), True
        command = [sys.executable, "-u", "-m", self.module, "--host", self.host,
                   "--port", str(self.port), *_flags(self.options), *self._tls_flags()]
        env = child_env()
        with self._new_log() as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            env=env)
        _running.add(self)

    def _new_log(self) -> BinaryIO:
        """Create this start's log file, named so that no other start, in any thread or
        process sharing the folder, writes to the same one."""
        stamp = time.strftime("%H%M%S")
        number = len(os.listdir(self.log_dir))
        while True:
            self.log_path = self.log_dir / f"{self.kind}-{stamp}-{number}.log"
            try:
                return open(self.log_path, "xb")
            except FileExistsError:
                number += 1

    def wait_ready(self) -> None:
        """Return once the spawned process answers `/health`; see `start()` for what it raises.

        A port the kit picked may be taken before the server binds it (by another program
        picking at the same moment): then the server starts again on another one, twice at most.
        """
        for attempt in range(3):
            try:
                self.url = _wait_ready(self, self.ready_timeout, self.port, self._port_picked)
                return
            except _PortTaken:
                # a port given to launch() is kept, and a restart keeps its port for its clients
                if attempt == 2 or not self._port_picked or self.url:
                    self.stop()
                    raise
                self.stop()
                self.port = 0
                self.spawn()
            except BaseException:
                self.stop()
                raise

    def restart(self, **changes: Any) -> Server:
        """Stop the server and start it again, with `changes` applied to its options.

        The server comes back on the same port, so running clients reconnect to it. An
        in-memory log starts over (a new `stream`, ids from 1); a `store="sqlite:PATH"` log
        keeps its stream and ids.
        """
        self.stop()
        if self.url and not self.port:
            self.port = int(self.url.rsplit(":", 1)[1])
        self.options = {**self.options, **changes}
        self.start()
        return self

    def _unreachable(self, path: str, exc: requests.RequestException) -> ServerNotReady:
        state = "is running" if self.running else "has exited"
        return ServerNotReady(
            f"{self.kind} server at {self.url} did not answer {path}: {exc}. The process "
            f"{state}; its log is {self.log_path}.\n{self.log_tail()}"
        )

    def pause(self) -> None:
        """Freeze the server (SIGSTOP to its group): it accepts nothing and answers nothing.

        This is what a stall looks like from outside: a long garbage-collection pause, a host
        swapping, a debugger on a breakpoint. `resume()` lets it carry on where it stopped.
        """
        signal_group(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server carry on (SIGCONT to its group)."""
        signal_group(self.pid, signal.SIGCONT)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far, from /proc (Linux)."""
        return cpu_seconds(self.pid)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server's whole process group and reap it: SIGTERM, then SIGKILL."""
        _running.discard(self)
        with self._lock:
            self._session.close()
        if self.process is not None:
            stop_process_group(self.process, timeout)

    def __repr__(self) -> str:
        if self.process is None:
            return f"<Server {self.kind}, not started>"
        state = "running" if self.running else f"stopped (exit {self.process.returncode})"
        return f"<Server {self.kind} at {self.url}, pid {self.pid}, {state}>"


def raise_open_file_limit() -> tuple[int, int]:
    """Raise this process's soft open-file limit to its hard limit; return (soft, hard).

    Every waiting client costs one file descriptor in the process that holds it, and Linux
    often starts processes at 1,024. A server inherits the limit of the process that launches
    it, so `launch()` and `Swarm.start()` both call this first.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def launch(kind: str = "asyncio", *, host: str = "127.0.0.1", port: int = 0,
           ready_timeout: float = 20.0, log_dir: str | Path | None = None,
           **options: Any) -> Server:
    """Start a bundled server and return once it answers `/health`.

    `kind` is "short", "naive" or "flask" (the Flask server), or "asyncio" or "fastapi" (the
    FastAPI server). `options` become the server's flags: `hold`, `retention`,
    `generate_every`, and for Flask `check_interval` and `threaded`. `tls=True` serves https
    with a throwaway certificate (`helpers.tls`): then `url` starts with https:// and clients
    pass `verify=server.ca_file`. Leave `port` at 0 to get a free port
    (`helpers.processes.free_port`: below the ports the OS gives outgoing connections, so a
    restart finds it free again). Use the result as a context manager, or call `.stop()`.
    `launch("proxy", upstream=server.url, read_timeout=S)` puts the bundled reverse proxy in
    front of a server. `launch("asyncio", broker=redis.url)` keeps the log in Redis
    (`launch_redis()`), shared with every server launched with the same `broker` and
    `broker_key` (docs/broker.md).

    Raises ServerNotReady, with the tail of the server's log, if the server exits or does not
    answer within `ready_timeout` seconds.
    """
    server = _server(kind, host=host, port=port, ready_timeout=ready_timeout, log_dir=log_dir,
                     **options)
    server.start()
    return server


def _server(kind: str, *, host: str = "127.0.0.1", port: int = 0, ready_timeout: float = 20.0,
            log_dir: str | Path | None = None, **options: Any) -> Server:
    """The Server `launch(kind, ...)` would start, not yet started."""
    return Server(kind, host=host, port=port, ready_timeout=ready_timeout,
                  log_dir=Path(log_dir) if log_dir else default_log_dir(), options=options)


def launch_all(plans: Sequence[tuple[str, Mapping[str, Any]]], *,
               ready_timeout: float = 20.0, log_dir: str | Path | None = None) -> list[Server]:
    """Start several bundled servers at once; return them, in order, once every one is ready.

    `plans` are `(kind, options)` pairs, each what `launch(kind, **options)` takes. The
    processes are started one after another from this thread (each dies with it, as with
    `launch`), then awaited together, so starting n servers takes about as long as the slowest
    one instead of the sum. Raises ServerNotReady like `launch`; every server is stopped then.
    """
    servers: list[Server] = []
    try:
        for kind, options in plans:
            server = _server(kind, ready_timeout=ready_timeout, log_dir=log_dir, **options)
            servers.append(server)
            server.spawn()
        for server in servers:
            server.wait_ready()
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


class _PortTaken(ServerNotReady):
    """The server could not bind its port: another program has it."""


def _wait_ready(server: Server, timeout: float, port: int, picked: bool) -> str:
    deadline = time.monotonic() + timeout
    url = ""
    while time.monotonic() < deadline:
        assert server.process is not None
        if server.process.poll() is not None:
            error, hint = ServerNotReady, ""
            if port and b"in use" in server.log_path.read_bytes():
                error = _PortTaken
                hint = (f" Port {port}, which the kit picked, was taken by another program "
                        "meanwhile; launch(...) a new server." if picked else
                        f" Port {port} is in use by another program; launch(...) picks a free "
                        "port if you leave port unset.")
            raise error(
                f"The {server.kind} server exited with code {server.process.returncode} before "
                f"it was ready.{hint} Last lines of {server.log_path}:\n{server.log_tail()}"
            )
        if not url:
            found = _READY_LINE.search(server.log_path.read_bytes())
            url = found.group(1).decode() if found else ""
        if url:
            try:
                if server._session.get(url + "/health", timeout=1).ok:
                    return url
            except requests.RequestException:
                pass
        time.sleep(0.05)
    raise ServerNotReady(
        f"The {server.kind} server did not answer /health within {timeout:g} s. It may be slow to "
        f"import on a busy machine: try launch(..., ready_timeout=60). Last lines of "
        f"{server.log_path}:\n{server.log_tail()}"
    )


@atexit.register
def _stop_all() -> None:
    """Stop every server still running: all are sent SIGTERM first, so that they wind down
    side by side (each takes about 0.2 s), then each is waited for and reaped."""
    servers = [server for server in list(_running) if server.running]
    for server in servers:
        signal_group(server.pid, signal.SIGTERM)
    for server in list(_running):
        server.stop(timeout=2)
