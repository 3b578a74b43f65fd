"""Starting a bundled server: its typed config, its command line, binding, announcing, dying.

`python -m servers.<name>` reads a `ServerConfig` from its command line (`parse_config`), binds
its socket (`bind_socket`), prints the URL it actually bound (`announce`, which the launcher
waits for), and, when a notebook launched it, dies with that notebook's kernel (`die_with_parent`).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, get_args

from servers.contract import LOOPBACK, MAX_TIMEOUT_S
from servers.limits import DEFAULT_REQUEST_TIMEOUT_S
from servers.store import StoreChoice

#: Where `--token` is read from when it is not on the command line (which shells remember).
TOKEN_ENV = "POLLING_LAB_TOKEN"
#: `log`: a woken server reads the shared log from its cursor (right). `relay`: it only relays
#: the notifications' payloads (WRONG ON PURPOSE, notebook 08's "pub/sub alone" bug).
BrokerMode = Literal["log", "relay"]


@dataclass(frozen=True)
class ServerConfig:
    """Everything a bundled server can be told at start. Defaults follow API.md."""

    host: str = "127.0.0.1"
    port: int = 0
    hold: float = 30.0  # default long-poll hold, seconds
    retention: int = 10_000  # events kept in memory
    generate_every: float | None = None  # publish a generated event every N seconds
    check_interval: float = 1.0  # the naive server's sleep between checks
    threaded: bool = True  # the Flask server only
    store: str = "memory"  # "memory", or "sqlite:PATH" (survives restarts)
    max_waiting: int = 15_000  # long polls held at once; beyond it, 503 with Retry-After
    token: str | None = field(default=None, repr=False)  # needed to publish, when set
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S  # to send a whole request, seconds
    broker: str | None = None  # redis://HOST:PORT/DB: the event log lives there (asyncio only)
    broker_key: str = "polling-lab"  # servers with the same broker and key share one log
    broker_mode: BrokerMode = "log"
    #: `store`, read once: the typed choice that `servers.store.open_log` takes.
    store_choice: StoreChoice = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # frozen: set the one derived field through object.__setattr__, as dataclasses do
        object.__setattr__(self, "store_choice", StoreChoice.parse(self.store))
        if not 0 <= self.hold <= MAX_TIMEOUT_S:
            raise ValueError(f"hold must be from 0 to {MAX_TIMEOUT_S:g} seconds, not {self.hold}")
        if self.retention < 1:
            raise ValueError("retention must be at least 1 event")
        if self.check_interval <= 0:
            raise ValueError("check_interval must be a positive number of seconds")
        if self.generate_every is not None and self.generate_every <= 0:
            raise ValueError("generate_every must be a positive number of seconds")
        if self.max_waiting < 0:
            raise ValueError("max_waiting must be 0 or more")
        if not 0 < self.request_timeout <= 3600:
            raise ValueError("request_timeout must be more than 0 and at most 3600 seconds")
        if self.token is not None:
            check_token_choice(self.token)
        check_broker_choice(self)
        if self.token is None and self.host not in LOOPBACK:
            raise ValueError(
                f"--host {self.host} lets other machines publish events; start with "
                "--token SECRET so that only people who know it can (learners then use "
                "connect(url, token))"
            )


def check_token_choice(token: str) -> None:
    """Refuse a token that would open the door or could never be sent; ValueError says why."""
    if not token.strip():
        raise ValueError(
            f"--token (or {TOKEN_ENV}) is empty or blank, which anyone could send; choose a "
            "real secret, for example python -c 'import secrets; print(secrets.token_urlsafe(24))'"
        )
    if token != token.strip() or not token.isprintable():
        raise ValueError(
            "--token starts or ends with a space, or holds a control character; HTTP strips "
            "those from headers, so no client could send it. Use secrets.token_urlsafe(24)."
        )


def check_broker_choice(config: ServerConfig) -> None:
    """Refuse a broker the server cannot use; ValueError says what to write instead."""
    if config.broker_mode not in get_args(BrokerMode):
        raise ValueError(f"--broker-mode must be one of {get_args(BrokerMode)}")
    if not config.broker_key or not config.broker_key.isprintable() or " " in config.broker_key:
        raise ValueError("--broker-key must be a non-empty name without spaces, e.g. polling-lab")
    if config.broker is None:
        return
    if not config.broker.startswith("redis://"):
        raise ValueError(f"--broker {config.broker!r} is not understood; use redis://HOST:PORT/DB"
                         ", for example redis://127.0.0.1:6379/0")
    if config.store != "memory":
        raise ValueError("--broker keeps the event log in Redis, so --store has nothing to keep; "
                         "use one or the other")


def parse_config(name: str, argv: list[str] | None = None, *, flask: bool = False) -> ServerConfig:
    """Read a ServerConfig from the command line of `python -m servers.<name>`."""
    p = argparse.ArgumentParser(prog=f"python -m servers.{name}",
                                description=f"Run the Polling Lab server {name} (docs/api.md).")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    p.add_argument("--hold", type=float, default=30.0, help="default long-poll hold, seconds")
    p.add_argument("--retention", type=int, default=10_000, help="events kept in memory")
    p.add_argument("--generate-every", type=float, default=None, metavar="S",
                   help="publish a generated event every S seconds")
    p.add_argument("--store", default="memory", metavar="memory|sqlite:PATH",
                   help="where events live; sqlite:PATH keeps stream and ids across restarts")
    p.add_argument("--max-waiting", type=int, default=15_000, metavar="N",
                   help="long polls held at once; more get 503 with Retry-After")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                   help="require 'Authorization: Bearer TOKEN' on POST /trigger_event "
                        "(needed with a --host other than loopback). Default: the "
                        f"{TOKEN_ENV} environment variable, which keeps it out of shell "
                        "history. Choose one with python -c 'import secrets; "
                        "print(secrets.token_urlsafe(24))'")
    p.add_argument("--request-timeout", type=float, default=DEFAULT_REQUEST_TIMEOUT_S,
                   metavar="S", help="close a connection whose request (line, headers and "
                   f"body) is not complete after S seconds (default {DEFAULT_REQUEST_TIMEOUT_S:g}"
                   "); a held long poll is complete, and is not cut")
    if not flask:
        p.add_argument("--broker", default=None, metavar="redis://HOST:PORT/DB",
                       help="keep the event log in Redis, shared by every server started with "
                       "the same broker and key (docs/broker.md)")
        p.add_argument("--broker-key", default="polling-lab", metavar="NAME",
                       help="the name of the shared log in the broker (default polling-lab)")
        p.add_argument("--broker-mode", default="log", choices=get_args(BrokerMode),
                       help="log: read the shared log from each cursor (default). relay: only "
                       "relay pub/sub payloads, WRONG ON PURPOSE, to show events it loses")
    if flask:
        p.add_argument("--check-interval", type=float, default=1.0, metavar="S",
                       help="how long the naive long poll sleeps between checks")
        mode = p.add_mutually_exclusive_group()
        mode.add_argument("--threaded", dest="threaded", action="store_true", default=True,
                          help="one thread per connection (Flask's default since 1.0)")
        mode.add_argument("--single-threaded", dest="threaded", action="store_false",
                          help="serve one request at a time, to show head-of-line blocking")
    args = p.parse_args(argv)
    try:
        return ServerConfig(**vars(args))
    except ValueError as exc:
        p.error(str(exc))


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind a listening TCP socket, and say what to do if the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise SystemExit(
                f"Port {port} is in use by another program; pass --port 0 (or leave port unset "
                "in launch()) to pick a free port."
            ) from None
        raise SystemExit(f"Cannot bind {host}:{port}: {exc.strerror}.") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def die_with_parent() -> None:
    """When started by `helpers.launch()`, ask Linux to SIGTERM us if the launcher dies.

    This is what takes a server along when its Jupyter kernel is restarted or killed.
    """
    parent = os.environ.get("POLLING_LAB_PARENT_PID")
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != int(parent):  # the launcher died before prctl took effect
        raise SystemExit("The process that launched this server has exited; not starting.")


def announce(name: str, sock: socket.socket, config: ServerConfig) -> str:
    """Print the URL actually bound. The launcher waits for this line in the server's log."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"
    print(f"polling-lab {name} serving on {url}", flush=True)
    if host not in LOOPBACK:
        print(
            f"WARNING: {name} is reachable from other machines on {host}: anyone who can reach "
            "it can read its events. Publishing needs the --token.",
            flush=True,
        )
    return url


def start_generator(config: ServerConfig, publish: Callable[[str], object]) -> None:
    """Publish an event every `generate_every` seconds from a daemon thread, like the article."""
    every = config.generate_every
    if every is None:
        return

    def run() -> None:
        n = 0
        while True:
            time.sleep(every)
            n += 1
            publish(f"Generated event #{n}")

    threading.Thread(target=run, name="event-generator", daemon=True).start()


async def generate(every: float, publish: Callable[[str], Awaitable[object]]) -> None:
    """`start_generator` for an event loop: publish every `every` seconds from a task.

    A publish that fails (a broker that is down) is skipped; the next one tries again.
    """
    n = 0
    while True:
        await asyncio.sleep(every)
        n += 1
        try:
            await publish(f"Generated event #{n}")
        except Exception as exc:  # noqa: BLE001 - one failed publish must not end the task
            print(f"generated event #{n} not published: {exc}", file=sys.stderr, flush=True)
