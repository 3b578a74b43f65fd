"""helpers/launcher.py: a launched server is ready when launch() returns, and never outlives
the process that launched it."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from helpers import Server, ServerNotReady, launch, launcher, processes
from helpers.launcher import PROJECT_ROOT, launch_all

pytestmark = pytest.mark.live


def process_gone(pid: int) -> bool:
    """True once `pid` no longer runs: no /proc entry, or a zombie nobody has reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def refuses_connections(url: str) -> bool:
    try:
        requests.get(url + "/health", timeout=1)
    except requests.ConnectionError:
        return True
    return False


@pytest.mark.parametrize("kind", ["naive", "asyncio"])
def test_launch_is_ready_then_stop_reaps_even_with_a_poll_held(kind: str) -> None:
    server = launch(kind, hold=30)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert not server.url.endswith(":0")
        assert server.running
        assert server.health()["status"] == "ok"  # ready as soon as launch() returns
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(requests.get, server.url + "/poll_for_updates",
                               params={"timeout": 30}, timeout=40)
            deadline = time.monotonic() + 5
            while server.stats()["waiting"] != 1:
                assert time.monotonic() < deadline, "the poll was never held"
                time.sleep(0.02)
            started = time.monotonic()
            server.stop()
            took = time.monotonic() - started
            try:
                held.result(timeout=5)  # the held poll ends with its server, not after 30 s
            except requests.RequestException:
                pass
    finally:
        server.stop()
    assert took < 4.5, "stop() had to wait for the held poll (or fell back to SIGKILL)"
    assert server.process.returncode in (0, -signal.SIGTERM)  # a graceful stop, no SIGKILL
    assert not server.running
    assert not Path(f"/proc/{server.pid}").exists()  # reaped: not even a zombie
    assert refuses_connections(server.url)
    server.stop()  # stopping twice is harmless


def test_context_manager_stops_the_server() -> None:
    with launch("naive", hold=1) as server:
        assert isinstance(server, Server)
        event = server.trigger("hello")
        assert (event["id"], event["message"]) == (1, "hello")
        assert server.stats()["events_published"] == 1
    assert server.process.returncode is not None
    assert not server.running
    assert process_gone(server.pid)
    assert refuses_connections(server.url)
    assert "stopped" in repr(server)


def test_port_in_use_says_so() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        started = time.monotonic()
        with pytest.raises(ServerNotReady) as raised:
            launch("asyncio", port=port)
        assert time.monotonic() - started < 15  # it fails as soon as the child exits
    finally:
        taken.close()
    message = str(raised.value)
    assert f"Port {port} is in use" in message
    assert "leave port unset" in message


def test_a_chosen_free_port_is_used() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with launch("naive", port=port) as server:
        assert server.url == f"http://127.0.0.1:{port}"


def test_a_launched_server_gets_a_port_below_the_range_of_outgoing_connections() -> None:
    with launch("naive") as server:
        port = int(server.url.rsplit(":", 1)[1])
        assert processes.SERVER_PORTS_FROM <= port < processes.outgoing_ports_from()
        server.restart()
        assert server.url.endswith(f":{port}")


def test_a_picked_port_taken_before_the_server_binds_it_is_replaced(
        monkeypatch: pytest.MonkeyPatch) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", processes.free_port()))
    taken.listen()
    picks = iter([taken.getsockname()[1], processes.free_port()])
    monkeypatch.setattr(launcher, "free_port", lambda host: next(picks))
    try:
        with launch("naive") as server:
            assert server.url != f"http://127.0.0.1:{taken.getsockname()[1]}"
            assert server.stats()["waiting"] == 0
    finally:
        taken.close()


def test_without_room_below_the_outgoing_range_the_os_picks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outgoing_from = processes.outgoing_ports_from()  # this machine's, read before the patch
    narrow = tmp_path / "ip_local_port_range"
    narrow.write_text(f"{processes.SERVER_PORTS_FROM + 500}\t60999\n")
    monkeypatch.setattr(processes, "_OUTGOING_RANGE", narrow)
    assert processes.free_port() >= outgoing_from  # from the OS's own range


def test_unknown_kind_is_refused_before_anything_starts() -> None:
    with pytest.raises(ValueError) as raised:
        launch("tornado")
    assert "'tornado'" in str(raised.value)
    for kind in ("short", "naive", "asyncio"):
        assert kind in str(raised.value)


@pytest.mark.parametrize(
    ("kind", "options", "flag"),
    [("asyncio", {"bogus": 1}, "--bogus"), ("asyncio", {"threaded": False}, "--single-threaded"),
     ("naive", {"hold": -1}, "hold must be from 0 to 300")],
)
def test_a_bad_option_names_itself(kind: str, options: dict[str, object], flag: str) -> None:
    with pytest.raises(ServerNotReady) as raised:
        launch(kind, **options)
    message = str(raised.value)
    assert "exited with code 2" in message
    assert flag in message


def test_the_log_goes_to_a_file_not_to_the_output(capfd: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    with launch("asyncio", log_dir=tmp_path) as server:
        server.trigger("quiet")
        requests.get(server.url + "/nope", timeout=5)
    out, err = capfd.readouterr()
    assert "serving on" not in out + err
    assert server.log_path.parent == tmp_path
    log = server.log_path.read_text()
    assert "servers.fastapi_server" in log  # the command line, for the learner to rerun
    assert f"serving on {server.url}" in log
    assert server.log_tail(1) == log.splitlines()[-1]


def test_launch_all_returns_every_server_ready_each_with_its_own_log(tmp_path: Path) -> None:
    servers = launch_all([("asyncio", {"hold": 5}), ("naive", {"check_interval": 0.2}),
                          ("asyncio", {})], log_dir=tmp_path)
    try:
        assert [s.kind for s in servers] == ["asyncio", "naive", "asyncio"]
        assert all(s.health()["status"] == "ok" for s in servers)  # ready when it returns
        assert len({s.url for s in servers}) == len({s.log_path for s in servers}) == 3
        assert servers[1].check_interval == 0.2
        assert all(f"serving on {s.url}" in s.log_path.read_text() for s in servers)
    finally:
        for server in servers:
            server.stop()
    assert not any(s.running for s in servers)


def children() -> set[int]:
    """The pids of this process's children that still run (reaped ones are gone)."""
    found: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        found |= {int(pid) for pid in (task / "children").read_text().split()}
    return {pid for pid in found if not process_gone(pid)}


@pytest.mark.skipif(not Path(f"/proc/self/task/{os.getpid()}/children").exists(),
                    reason="reads /proc/self/task/*/children (Linux)")
def test_launch_all_stops_the_others_when_one_fails(tmp_path: Path) -> None:
    before = children()
    with pytest.raises(ServerNotReady) as raised:
        launch_all([("asyncio", {}), ("asyncio", {"bogus": 1}), ("naive", {})],
                   log_dir=tmp_path)
    assert "--bogus" in str(raised.value)
    assert len(list(tmp_path.iterdir())) == 3  # all three were started...
    assert children() <= before  # ...and none of them runs any more


def test_starts_in_several_threads_at_once_never_share_a_log(tmp_path: Path) -> None:
    with ThreadPoolExecutor(4) as pool:  # its threads outlive the servers they launched
        servers = list(pool.map(lambda _: launch("naive", log_dir=tmp_path), range(4)))
        try:
            assert len({s.log_path for s in servers}) == 4
            assert all(f"serving on {s.url}" in s.log_path.read_text() for s in servers)
        finally:
            for server in servers:
                server.stop()


def test_server_dies_when_the_launching_process_is_killed() -> None:
    code = (
        "import time\n"
        "from helpers import launch\n"
        "server = launch('asyncio', hold=30)\n"
        "print(server.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    kernel = subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pid = None
    try:
        ready, _, _ = select.select([kernel.stdout], [], [], 30)
        assert ready, "the launching process printed no pid within 30 s"
        assert kernel.stdout is not None
        line = kernel.stdout.readline()
        assert line.strip().isdigit(), (line, kernel.stderr.read() if kernel.poll() else "")
        pid = int(line)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert b"servers.fastapi_server" in cmdline
        assert not process_gone(pid)

        kernel.send_signal(signal.SIGKILL)  # no atexit, no finally: only the kernel's death
        kernel.wait(5)
        deadline = time.monotonic() + 5
        while not process_gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process_gone(pid), "the server outlived the process that launched it"
    finally:
        if kernel.poll() is None:
            kernel.kill()
            kernel.wait()
        for stream in (kernel.stdout, kernel.stderr):
            if stream is not None:
                stream.close()
        if pid is not None and not process_gone(pid):
            try:
                if b"servers." in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.killpg(pid, signal.SIGKILL)  # the server leads its own process group
            except (OSError, ProcessLookupError):
                pass


def test_stop_all_at_exit_stops_every_running_server(
        launched: Callable[..., Server], monkeypatch: pytest.MonkeyPatch) -> None:
    servers = [launched("naive"), launched("asyncio"), launched("asyncio")]
    servers[2].pause()  # a stalled server must be stopped too
    assert all(server in launcher._running for server in servers)
    # Only this test's servers: the session's shared servers must survive the "exit".
    monkeypatch.setattr(launcher, "_running", set(servers))
    launcher._stop_all()
    assert not any(server.running for server in servers)
    assert not launcher._running


@pytest.mark.parametrize(
    ("kind", "options", "expected"),
    [("naive", {}, 1.0), ("naive", {"check_interval": 0.05}, 0.05), ("short", {}, 1.0),
     ("asyncio", {}, None)],
)
def test_check_interval_is_the_sleep_loops_or_none(
        tmp_path: Path, kind: str, options: dict[str, float], expected: float | None) -> None:
    server = Server(kind, host="127.0.0.1", port=0, ready_timeout=1, log_dir=tmp_path,
                    options=options)  # not started: the property reads the launch options
    assert server.check_interval == expected
