"""servers/startup.py: the typed config, the command line, and binding a socket."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import pytest

from servers.startup import (
    ServerConfig,
    announce,
    bind_socket,
    die_with_parent,
    generate,
    parse_config,
    start_generator,
)

# --- configuration and start-up ---------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [{"hold": -1}, {"hold": 301}, {"retention": 0}, {"check_interval": 0},
     {"generate_every": 0}],
)
def test_server_config_validates_once(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ServerConfig(**bad)  # type: ignore[arg-type]


def test_server_config_defaults_follow_api_md() -> None:
    config = ServerConfig()
    assert (config.host, config.port, config.hold) == ("127.0.0.1", 0, 30.0)


def test_parse_config_reads_flags() -> None:
    config = parse_config("flask_server", ["--port", "0", "--hold", "2.5", "--single-threaded",
                                           "--check-interval", "0.1", "--retention", "7"],
                          flask=True)
    assert (config.hold, config.threaded, config.check_interval, config.retention) == (
        2.5, False, 0.1, 7)
    assert parse_config("flask_server", [], flask=True).threaded is True


def test_parse_config_refuses_flask_flags_for_fastapi(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config("fastapi_server", ["--single-threaded"])
    assert "unrecognized arguments" in capsys.readouterr().err


def test_parse_config_explains_a_bad_value(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config("fastapi_server", ["--hold", "-3"])
    assert "hold must be from 0 to 300" in capsys.readouterr().err


def test_bind_socket_picks_a_free_loopback_port() -> None:
    sock = bind_socket("127.0.0.1", 0)
    try:
        host, port = sock.getsockname()
        assert host == "127.0.0.1"
        assert port > 0
    finally:
        sock.close()


def test_bind_socket_says_the_port_is_in_use() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(SystemExit) as raised:
            bind_socket("127.0.0.1", port)
        assert f"Port {port} is in use" in str(raised.value)
    finally:
        taken.close()


def test_die_with_parent_does_nothing_when_no_launcher_started_us(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POLLING_LAB_PARENT_PID", raising=False)
    die_with_parent()  # no prctl, no exit


def test_die_with_parent_refuses_to_start_when_the_launcher_is_gone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("parent-death signals are Linux only")
    # Run in a child, so that the parent-death signal is set on a process that ends here.
    code = ("import os; os.environ['POLLING_LAB_PARENT_PID'] = '1'\n"
            "from servers.startup import die_with_parent; die_with_parent()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode != 0 and "has exited; not starting" in done.stderr


def test_announce_prints_the_url_the_launcher_waits_for(
        capsys: pytest.CaptureFixture[str]) -> None:
    sock = bind_socket("127.0.0.1", 0)
    try:
        url = announce("demo", sock, ServerConfig())
        assert url == f"http://127.0.0.1:{sock.getsockname()[1]}"
        assert capsys.readouterr().out == f"polling-lab demo serving on {url}\n"
    finally:
        sock.close()


def test_start_generator_publishes_from_a_thread_and_only_when_asked() -> None:
    published: list[str] = []
    start_generator(ServerConfig(), published.append)  # generate_every unset: nothing starts
    start_generator(ServerConfig(generate_every=0.01), published.append)
    deadline = time.monotonic() + 5
    while len(published) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert published[:3] == ["Generated event #1", "Generated event #2", "Generated event #3"]


def test_generate_publishes_from_a_task_until_cancelled() -> None:
    published: list[str] = []

    async def publish(message: str) -> None:  # the asyncio server's log is awaited
        published.append(message)

    async def run() -> None:
        task = asyncio.create_task(generate(0.01, publish))
        while len(published) < 2:
            await asyncio.sleep(0.005)
        task.cancel()

    asyncio.run(asyncio.wait_for(run(), timeout=5))
    assert published[:2] == ["Generated event #1", "Generated event #2"]


@pytest.mark.parametrize("seconds", [0, -1, 3601])
def test_the_request_timeout_must_be_sensible(seconds: float) -> None:
    with pytest.raises(ValueError, match="request_timeout"):
        ServerConfig(request_timeout=seconds)
    assert ServerConfig().request_timeout == 10.0
    assert parse_config("fastapi_server", ["--request-timeout", "2.5"]).request_timeout == 2.5
