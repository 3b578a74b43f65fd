"""Nchan, the production reference: nginx with the nchan module, configured and run by us.

`helpers.nginx` writes the config into a temporary directory (pid file, logs and temp paths
all inside it), starts nginx in the foreground (`daemon off`) as a child process in its own
process group, on loopback, and stops it by that group; this module adds Nchan's part. One
location is a long-poll subscriber, one a publisher, one the status counters; all three use one
channel.

One nginx worker process: the kit's servers are one Python process each, and the load client
needs the machine's other core.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

from helpers.loadclient import Reply, request_bytes
from helpers.nginx import Nginx, find_nginx, launch_nginx
from helpers.processes import free_port
from helpers.scaling.peers import ControlChannel

MODULE_CANDIDATES = ("/usr/lib/nginx/modules/ngx_nchan_module.so",
                     "/usr/lib64/nginx/modules/ngx_nchan_module.so",
                     "/usr/local/nginx/modules/ngx_nchan_module.so")
INSTALL_HINT = ("install it with `sudo apt-get install nginx libnginx-mod-nchan` (Debian, "
                "Ubuntu), or set NGINX=/path/to/nginx and NCHAN_MODULE=/path/to/"
                "ngx_nchan_module.so")

#: Nchan's part of the config; helpers.nginx writes the rest (pid file, logs, temp paths).
MAIN = "load_module {module};\nworker_rlimit_nofile {nofile};"
HTTP = """\
  access_log off;
  keepalive_timeout 300s;
  keepalive_requests 1000000;
  nchan_shared_memory_size 256M;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /sub {{
      nchan_subscriber longpoll;
      nchan_channel_id bench;
      nchan_subscriber_timeout {hold}s;
    }}
    # bench.streams: Nchan's own EventSource and WebSocket subscribers, on the same channel
    location = /sub_es {{
      nchan_subscriber eventsource;
      nchan_channel_id bench;
      nchan_subscriber_first_message newest;
    }}
    location = /sub_ws {{
      nchan_subscriber websocket;
      nchan_channel_id bench;
      nchan_subscriber_first_message newest;
    }}
    location = /pub {{
      nchan_publisher;
      nchan_channel_id bench;
      nchan_message_buffer_length 100;
      nchan_message_timeout 10m;
    }}
    location = /nchan_status {{ nchan_stub_status; }}
  }}
"""


@dataclass
class NchanCursor:
    """Nchan's long-poll cursor: the last message's `Last-Modified` and `Etag`, sent back as
    `If-Modified-Since` and `If-None-Match` (a `helpers.loadclient.Cursor`)."""

    last_modified: str
    etag: str
    path: str = "/sub"

    @classmethod
    def from_message_id(cls, message_id: str, path: str = "/sub") -> NchanCursor:
        """From Nchan's "<unix time>:<tag>" message id (a publish answers with it)."""
        seconds, _, tag = message_id.partition(":")
        return cls(formatdate(int(seconds), usegmt=True), tag.split(",")[0] or "0", path)

    def poll(self, hold: float) -> bytes:
        # Nchan's hold is set in its config (nchan_subscriber_timeout), not per request.
        return request_bytes("GET", self.path, headers={
            "If-Modified-Since": self.last_modified, "If-None-Match": self.etag})

    def advance(self, reply: Reply) -> int:
        if reply.status != 200:
            return 0
        self.last_modified = reply.headers.get("last-modified", self.last_modified)
        self.etag = reply.headers.get("etag", self.etag)
        return 1  # one message per long-poll response


def find_nchan() -> tuple[str, str] | str:
    """(nginx binary, nchan module path), or a sentence saying what is missing and how to fix it."""
    nginx = find_nginx()
    if not nginx:
        return f"nginx is not installed; {INSTALL_HINT}"
    modules = [os.environ["NCHAN_MODULE"]] if os.environ.get("NCHAN_MODULE") else (
        MODULE_CANDIDATES)
    module = next((c for c in modules if Path(c).is_file()), None)
    if not module:
        return (f"the nchan module for nginx is not installed (looked for "
                f"{', '.join(modules)}); {INSTALL_HINT}")
    return nginx, module


class NchanPeer:
    """nginx + nchan on loopback, as a benchmark peer (see helpers.scaling.peers.Peer)."""

    protocol = "nchan"

    def __init__(self, nginx: str, module: str, *, hold: float = 60.0,
                 label: str = "nchan (nginx)") -> None:
        self.label = label
        self.binary, self.module, self.hold = nginx, module, hold
        self.host, self.port = "127.0.0.1", 0
        self.nginx: Nginx | None = None
        self._control: ControlChannel | None = None
        self._last_message_id = ""
        self._previous_message_id = ""

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """nginx's master process (None before start)."""
        return self.nginx.process if self.nginx is not None else None

    @property
    def root(self) -> Path | None:
        """nginx's directory: its config, logs and temp paths (removed by stop)."""
        return self.nginx.root if self.nginx is not None else None

    async def start(self, ready_timeout: float = 10.0) -> NchanPeer:
        """Start nginx with Nchan's config, wait until it accepts, and publish a first message.

        Raises PollingLabError with the tail of nginx's error log if it does not come up.
        """
        self.port = free_port()
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        # launch_nginx waits for the port with short sleeps: a second or so, before any load.
        self.nginx = launch_nginx(
            HTTP.format(port=self.port, hold=int(self.hold)), port=self.port,
            main=MAIN.format(module=self.module, nofile=nofile), events="multi_accept on;",
            connections=max(1024, nofile - 100), binary=self.binary,
            ready_timeout=ready_timeout)
        try:
            self._control = ControlChannel(self.host, self.port)
            await self.publish("first")
            await self.publish("ready")
        except BaseException:
            await self.stop()
            raise
        return self

    def log_tail(self, lines: int = 10) -> str:
        return self.nginx.log_tail(lines) if self.nginx is not None else ""

    @property
    def control(self) -> ControlChannel:
        assert self._control is not None, "start() the peer first"
        return self._control

    def cursor(self) -> NchanCursor:
        return NchanCursor.from_message_id(self._last_message_id)

    def publish_request(self, message: str) -> bytes:
        return request_bytes("POST", "/pub", body=message.encode(),
                             headers={"Accept": "application/json"})

    def published(self, reply: Reply) -> None:
        if reply.status in (201, 202):
            self._previous_message_id = self._last_message_id
            self._last_message_id = json.loads(reply.body)["last_message_id"]

    async def publish(self, message: str) -> Reply:
        reply = await self.control.request(self.publish_request(message))
        self.published(reply)
        return reply

    async def waiting(self) -> int:
        reply = await self.control.request(request_bytes("GET", "/nchan_status"))
        found = re.search(rb"^subscribers: (\d+)", reply.body, re.MULTILINE)
        return int(found.group(1)) if found else 0

    def short_poll(self) -> bytes:
        # A long poll from the message before the newest is answered at once with the newest.
        return NchanCursor.from_message_id(self._previous_message_id).poll(self.hold)

    def pids(self) -> list[int]:
        """The master and its workers."""
        return self.nginx.pids() if self.nginx is not None else []

    async def stop(self) -> None:
        """Stop nginx by its master's process group (SIGTERM: fast shutdown), remove its files."""
        if self._control is not None:
            self._control.close()
        if self.nginx is not None:
            self.nginx.stop(5.0)  # workers left behind are killed too
