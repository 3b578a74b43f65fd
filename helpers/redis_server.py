"""A real Redis for the broker lessons: `redis-server` on a free loopback port, started by the kit.

    with launch_redis() as redis:
        with launch("asyncio", broker=redis.url) as a, launch("asyncio", broker=redis.url) as b:
            a.trigger("hi")      # b's clients hear it too: one log, in Redis

Like every server the kit launches, it binds 127.0.0.1, runs in its own session (the stop
button does not reach it), gets a parent-death signal (a restarted or killed kernel takes it
along) and an `atexit` stop, and writes its log to a file in its own temporary folder. With
`appendonly=True` it keeps an append-only file there, so `restart()` brings the events back.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import redis

from helpers.errors import PollingLabError, ServerNotReady
from helpers.launcher import child_env
from helpers.processes import StartedProcess, free_port, stop_process_group

INSTALL_HINT = ("install it with `sudo apt-get install redis-server` (Debian, Ubuntu) or "
                "`brew install redis` (macOS), then restart the kernel")
#: Runs redis-server under a parent-death signal: set in this Python, kept across exec.
_EXEC_WITH_PARENT = ("import os, sys; from servers.startup import die_with_parent; "
                     "die_with_parent(); os.execv(sys.argv[1], sys.argv[1:])")

_running: set[RedisServer] = set()


class RedisMissing(PollingLabError):
    """`redis-server` is not installed here; the message says how to install it."""


def redis_available() -> bool:
    """True when `redis-server` can be started on this machine (it is on the PATH)."""
    return shutil.which("redis-server") is not None


class RedisServer(StartedProcess):
    """A `redis-server` process the kit started: its `url`, `port`, `pid`, and what to do to it.

    `stop()` and `restart()` act on it by its pid (its process group); `restart()` keeps the
    port and the data folder, so an append-only file survives it. `kill_pubsub()` cuts every
    pub/sub connection, as a network blip or a Redis failover would.
    """

    def __init__(self, *, appendonly: bool = False, ready_timeout: float = 10.0) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RedisMissing(f"redis-server is not installed, so the broker cells cannot "
                               f"run; {INSTALL_HINT}.")
        self.executable = executable
        self.appendonly = appendonly
        self.ready_timeout = ready_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="polling-lab-redis-"))
        self.log_path = self.dir / "redis.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:PORT/0`, what `launch("asyncio", broker=...)` takes."""
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        persistence = (["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
                       if self.appendonly else ["--appendonly", "no", "--save", ""])
        return [self.executable, "--bind", "127.0.0.1", "--port", str(self.port),
                "--daemonize", "no", "--dir", str(self.dir), "--protected-mode", "yes",
                *persistence]

    def start(self) -> RedisServer:
        """Start redis-server and return once it answers PING (on a free port, the first time).

        Raises ServerNotReady, with the tail of its log, if it exits or does not answer within
        `ready_timeout` seconds.
        """
        for attempt in range(3):
            fresh = not self.port
            self.port = self.port or free_port()
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-c", _EXEC_WITH_PARENT, *self.command()],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True, env=child_env(), cwd=self.dir)
            _running.add(self)
            if self._wait_ready():
                return self
            self.stop()
            if not (fresh and attempt < 2 and b"in use" in self.log_path.read_bytes()):
                break
            self.port = 0  # someone took the free port first: pick another one
        raise ServerNotReady(f"redis-server did not answer PING on port {self.port} within "
                             f"{self.ready_timeout:g} s. Last lines of {self.log_path}:\n"
                             f"{self.log_tail()}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.ready_timeout
        with self.client() as client:
            while time.monotonic() < deadline and self.running:
                try:
                    if client.ping():
                        return True
                except redis.RedisError:  # not listening yet, or loading its data
                    pass
                time.sleep(0.02)
        return False

    def client(self) -> redis.Redis:
        """A new (synchronous) redis-py client to this server; close it, or use `with`."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2,
                           socket_connect_timeout=2, decode_responses=True)

    def kill_pubsub(self) -> int:
        """Close every pub/sub connection (`CLIENT KILL TYPE pubsub`); how many there were."""
        with self.client() as client:
            return int(client.client_kill_filter(_type="pubsub"))

    @contextlib.contextmanager
    def pubsub_outage(self) -> Iterator[int]:
        """Cut every pub/sub connection and keep subscribers out until the block ends.

        Yields how many connections were cut. Inside the block Redis refuses SUBSCRIBE (an ACL
        rule on the default user), so a subscriber stays cut off for as long as the block
        lasts, as behind a network fault, however fast it reconnects; other commands, PUBLISH
        included, go on as before. A cut alone can be healed before the next publish arrives.
        """
        denied = ("-subscribe", "-psubscribe", "-ssubscribe")
        with self.client() as client:
            client.execute_command("ACL", "SETUSER", "default", *denied)
            try:
                yield self.kill_pubsub()
            finally:
                client.execute_command("ACL", "SETUSER", "default",
                                       *("+" + rule[1:] for rule in denied))

    def restart(self) -> RedisServer:
        """Stop it (SIGTERM: with `appendonly`, the file is flushed), start it on the same port."""
        self.stop()
        return self.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop redis-server by its pid (its process group) and reap it."""
        _running.discard(self)
        if self.process is not None:
            stop_process_group(self.process, timeout)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        self.remove_data()

    def remove_data(self) -> None:
        """Delete its temporary folder (log, append-only file); `stop()` first. `with` does it."""
        assert not self.running, "stop() the Redis server before removing its data"
        shutil.rmtree(self.dir, ignore_errors=True)

    def __repr__(self) -> str:
        state = f"pid {self.pid}, running" if self.running else "stopped"
        return f"<RedisServer {self.url}, {state}, appendonly={self.appendonly}>"


def launch_redis(*, appendonly: bool = False, ready_timeout: float = 10.0) -> RedisServer:
    """Start `redis-server` on a free loopback port and return once it answers PING.

    `appendonly=True` keeps an append-only file (fsync every second) in its temporary folder,
    so that `.restart()` keeps the events. Raises RedisMissing, saying how to install it, when
    redis-server is not installed, and ServerNotReady when it does not start.
    """
    return RedisServer(appendonly=appendonly, ready_timeout=ready_timeout).start()


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.stop(timeout=2)
        server.remove_data()
