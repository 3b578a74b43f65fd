"""Who may publish, against hostile headers and careless tokens, on every server (issue 15).

A wrong `Authorization` header of any shape (non-ASCII, empty, blank, wrong case, wrong
length) gets 401, never 500; the scheme is case-insensitive; an empty or blank `--token` is
refused at start; and the token may come from POLLING_LAB_TOKEN instead of the command line.
The live tests send raw bytes, because that is what a hostile client controls.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import Server
from servers.startup import TOKEN_ENV, ServerConfig, parse_config

TOKEN = "s3cret-Token_42"
NON_ASCII_TOKEN = "clé-секрет-✓"
REFUSED = [
    b"",  # no header at all (see _publish)
    b"Bearer ",
    b"Bearer",
    b"Bearer  " + TOKEN.encode(),  # two spaces
    b"Basic " + TOKEN.encode(),
    TOKEN.encode(),
    b"Bearer " + TOKEN.upper().encode(),  # the token is case-sensitive
    b"Bearer " + TOKEN[:-1].encode(),  # one character short
    b"Bearer " + TOKEN.encode() + b"x",  # one character long
    b"Bearer " + b"x" * 10_000,
    "Bearer clé".encode(),  # UTF-8
    "Bearer clé".encode("latin-1"),
    b"Bearer \xff\xfe\x80",  # not text at all
    "Bearer ✓".encode() + TOKEN.encode(),
]
SCHEMES = [b"Bearer", b"bearer", b"BEARER", b"BeArEr"]


def _publish(server: Server, authorization: bytes | None) -> tuple[int, dict[str, object]]:
    """POST /trigger_event with exactly these Authorization bytes (None or b"": no header)."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    header = b"Authorization: " + authorization + b"\r\n" if authorization else b""
    request = (b"POST /trigger_event HTTP/1.1\r\nHost: " + host.encode() + b"\r\n" + header
               + b"Content-Length: 0\r\nConnection: close\r\n\r\n")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.mark.live
@pytest.mark.parametrize("kind", ["asyncio", "naive"])
def test_every_wrong_header_is_401_and_any_case_of_the_scheme_is_accepted(
        kind: str, launched: Callable[..., Server]) -> None:
    server = launched(kind, token=TOKEN)
    for authorization in REFUSED:
        status, body = _publish(server, authorization)
        assert (status, body["error"]) == (401, "unauthorized"), authorization[:40]
    assert server.stats()["events_published"] == 0
    for scheme in SCHEMES:
        status, body = _publish(server, scheme + b" " + TOKEN.encode())
        assert status == 201, (scheme, body)
    assert server.stats()["events_published"] == len(SCHEMES)


@pytest.mark.live
@pytest.mark.parametrize("kind", ["asyncio", "naive"])
def test_a_non_ascii_token_is_compared_as_utf8_bytes_and_never_answers_500(
        kind: str, launched: Callable[..., Server]) -> None:
    server = launched(kind, token=NON_ASCII_TOKEN)
    for authorization in [*REFUSED, b"Bearer " + NON_ASCII_TOKEN.encode()[:-1]]:
        assert _publish(server, authorization)[0] == 401, authorization[:40]
    assert _publish(server, b"Bearer " + NON_ASCII_TOKEN.encode())[0] == 201


@pytest.mark.parametrize("token", ["", " ", "  ", "\t", "\n"])
def test_an_empty_or_blank_token_is_refused_before_anything_starts(token: str) -> None:
    with pytest.raises(ValueError, match="empty or blank"):
        ServerConfig(token=token)
    with pytest.raises(ValueError, match="empty or blank"):
        ServerConfig(host="0.0.0.0", token=token)


@pytest.mark.parametrize("token", [" s3cret", "s3cret ", "s3c\x00ret", "s3cret\r\nX-Evil: 1"])
def test_a_token_no_client_could_send_is_refused(token: str) -> None:
    with pytest.raises(ValueError, match="secrets.token_urlsafe"):
        ServerConfig(token=token)


@pytest.mark.parametrize("module", ["servers.fastapi_server", "servers.flask_server"])
@pytest.mark.parametrize("token", ["", "   "])
def test_the_servers_refuse_to_start_with_an_empty_token(module: str, token: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--port", "0", "--host", "0.0.0.0", "--token", token],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2],
        env={**os.environ, "POLLING_LAB_PARENT_PID": ""})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "empty or blank" in done.stderr and "serving on" not in done.stdout


def test_the_token_may_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "from-the-env")
    assert parse_config("fastapi_server", ["--host", "0.0.0.0"]).token == "from-the-env"
    assert parse_config("fastapi_server", ["--token", "flag"]).token == "flag"  # flag wins
    monkeypatch.setenv(TOKEN_ENV, " ")
    with pytest.raises(SystemExit):
        parse_config("fastapi_server", [])
    monkeypatch.delenv(TOKEN_ENV)
    assert parse_config("fastapi_server", []).token is None


def test_the_token_stays_out_of_the_configs_repr() -> None:
    assert TOKEN not in repr(ServerConfig(token=TOKEN))
