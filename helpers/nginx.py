"""nginx run by the kit: a config of its own in a directory of its own, on loopback, stopped by PID.

    with launch_nginx_proxy(server.url, read_timeout=1) as nginx:   # a gateway, as in production
        LongPollClient(nginx.url, hold=3)                            # its 504s are empty polls
    nginx = launch_nginx(http_config, port=port, main="load_module ...;")   # bench's Nchan

Real deployments put nginx in front of a long-poll server, and its `proxy_read_timeout` (60 s
by default) decides how long a quiet hold may last. To show and test that, the kit starts the
system's nginx (`apt-get install nginx`) itself: the config, the pid file, the logs and every
`*_temp_path` live in a temporary directory, so nothing outside it is touched and no root is
needed. nginx runs in the foreground (`daemon off`) in its own process group, whose id is the
master's PID; `stop()` sends SIGTERM there, waits, then SIGKILLs what is left.
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from helpers.errors import PollingLabError
from helpers.processes import StartedProcess, children, free_port, stop_process_group

NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx",
                    "/usr/local/nginx/sbin/nginx", "/opt/homebrew/bin/nginx")
INSTALL_HINT = ("install it with `sudo apt-get install nginx` (Debian, Ubuntu) or "
                "`brew install nginx` (macOS), or set NGINX=/path/to/nginx")

SKELETON = """\
{main}
daemon off;
master_process on;
worker_processes 1;
{user}
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections {connections}; {events} }}
http {{
  access_log {root}/access.log;
  client_body_temp_path {root}/client_body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
{http}
}}
"""

PROXY = """\
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass {upstream};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout {read_timeout}s;
    }}
  }}
"""


class NginxMissing(PollingLabError):
    """nginx is not installed here; the message says how to install it."""


def find_nginx() -> str | None:
    """The nginx binary ($NGINX if set, else the usual places), or None if there is none."""
    candidates = [os.environ["NGINX"]] if os.environ.get("NGINX") else NGINX_CANDIDATES
    return next((found for c in candidates if (found := shutil.which(c))), None)


def user_directive() -> str:
    """`user ...;` for a master started as root, so its workers drop to nobody; else nothing.

    As another user the directive is ignored with a warning, and the workers run as that user.
    """
    if os.geteuid() != 0:
        return ""
    try:
        nobody = pwd.getpwnam("nobody")
        return f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};"
    except KeyError:  # no such user or group here: stay root rather than fail
        return "user root;"


class Nginx(StartedProcess):
    """One running nginx: its `url`, `pid` (the master), its directory and its logs."""

    process: subprocess.Popen[bytes]  # started before it is made: never None

    def __init__(self, process: subprocess.Popen[bytes], root: Path, port: int) -> None:
        self.process = process
        self.root = root
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._stopped = False
        atexit.register(self.stop)  # however the kernel or the test ends, nginx does not outlive it

    def pids(self) -> list[int]:
        """The master and its workers (none once stopped)."""
        return [self.pid, *children(self.pid)] if self.running else []

    def log_tail(self, lines: int = 10) -> str:
        """The last lines of nginx's own output and error log, for an error message."""
        text = ""
        for name in ("stdout.log", "error.log"):
            with contextlib.suppress(OSError):
                text += (self.root / name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Return once nginx accepts connections; raise PollingLabError with its log if not."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                raise PollingLabError(f"nginx exited with code {self.process.returncode}:\n"
                                      + self.log_tail())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise PollingLabError("nginx did not accept connections within "
                                          f"{timeout:g} s:\n{self.log_tail()}") from None
                time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM to the master's group (a fast shutdown), SIGKILL after `timeout` s; clean up."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        stop_process_group(self.process, timeout)  # workers left behind are killed too
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Nginx:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def launch_nginx(http: str, *, port: int, main: str = "", events: str = "",
                 connections: int = 1024, binary: str | None = None,
                 ready_timeout: float = 10.0) -> Nginx:
    """Start nginx with `http` inside its `http { }` block, and return it once it accepts.

    `http` holds the `server { listen 127.0.0.1:<port>; ... }` blocks, `main` lines for the
    top of the config (`load_module`, `worker_rlimit_nofile`), `events` extra lines for the
    events block; `binary` is the nginx to run (default: `find_nginx()`). Raises NginxMissing
    if nginx is not installed, PollingLabError with its log if it does not start.
    """
    binary = binary or find_nginx()
    if binary is None:
        raise NginxMissing(f"nginx is not installed; {INSTALL_HINT}")
    root = Path(tempfile.mkdtemp(prefix="polling-lab-nginx-"))
    root.chmod(0o755)  # workers started by root run as nobody
    (root / "nginx.conf").write_text(SKELETON.format(
        main=main, user=user_directive(), root=root, connections=connections, events=events,
        http=http))
    with open(root / "stdout.log", "wb") as out:
        process = subprocess.Popen(
            [binary, "-p", str(root), "-c", str(root / "nginx.conf"), "-e",
             str(root / "error.log")],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    nginx = Nginx(process, root, port)
    try:
        nginx.wait_ready(ready_timeout)
    except BaseException:
        nginx.stop()
        raise
    return nginx


def launch_nginx_proxy(upstream: str, *, read_timeout: float,
                       ready_timeout: float = 10.0) -> Nginx:
    """nginx as a reverse proxy in front of `upstream` (a server's url), on a free port.

    `read_timeout` is nginx's `proxy_read_timeout` in seconds (whole seconds at least 1): a
    long poll held longer than that by a quiet server is answered 504 by nginx.
    """
    port = free_port()
    seconds = max(1, round(read_timeout))
    return launch_nginx(PROXY.format(port=port, upstream=upstream, read_timeout=seconds),
                        port=port, ready_timeout=ready_timeout)
