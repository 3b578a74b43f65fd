"""Where one fan-out spends the asyncio server's CPU time: `profile_fan_out(n)`.

The server is `servers.fastapi_server` run by `helpers.scaling.profile_server`, which measures
between two signals that this module sends around each fan-out.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from helpers.launcher import Server, default_log_dir
from helpers.loadclient import ApiCursor, close_all, open_pool
from helpers.scaling.fanout import publish_timed, wait_for_waiting
from helpers.scaling.peers import KitPeer
from helpers.scaling.sweep import run_on_own_loop

PROFILE_SERVER = "helpers.scaling.profile_server"


def profile_fan_out(n: int = 2_000, *, lean: bool = False) -> dict[str, Any]:
    """Where one fan-out to `n` held polls spends the asyncio server's CPU time.

    Two fan-outs on a fresh server: the first measured plainly (user and kernel CPU from the
    OS, garbage-collection time from `gc.callbacks`), the second under cProfile, which splits
    the Python time by package. Returns `cpu` (seconds by category: the kernel, the garbage
    collector, then the Python time shared out in cProfile's proportions), `python_shares`
    (those proportions, which do not depend on the OS's 10 ms CPU-time ticks), the fan-out's
    `max_ms`, cProfile's `top` functions (by own time) and `top_cumulative` (by time spent in
    them and in what they called; a coroutine's is the time while it ran, not while it waited),
    and `pstats`, the file of the whole profile (`pstats.Stats(path)` reads it).
    """
    out = Path(tempfile.mkdtemp(prefix="polling-lab-profile-")) / "profile.jsonl"
    server = Server("asyncio", host="127.0.0.1", port=0, ready_timeout=30.0,
                    log_dir=default_log_dir(), module=PROFILE_SERVER,
                    options={"hold": 120, "lean": lean, "profile_out": str(out)})
    server.start()
    try:
        async def measure() -> list[dict[str, Any]]:
            peer = await KitPeer.attach(server)
            pool = await open_pool(peer.host, peer.port, n)
            fan_outs = []
            try:
                cursor = peer.cursor()
                for start in (signal.SIGUSR1, signal.SIGRTMIN):
                    futures = [c.send(cursor.poll(120)) for c in pool]
                    await wait_for_waiting(peer, n, 60)
                    await asyncio.sleep(0.3)
                    os.kill(server.pid, start)
                    await asyncio.sleep(0.1)
                    started, published = await publish_timed(peer, "profiled")
                    replies = await asyncio.wait_for(asyncio.gather(*futures), 60)
                    os.kill(server.pid, signal.SIGUSR2)
                    peer.published(await published)
                    cursor = ApiCursor(peer.last_id)
                    fan_outs.append({"max_ms": 1000 * (max(r.done_at for r in replies)
                                                       - started),
                                     "delivered": sum(r.status == 200 for r in replies)})
                    await asyncio.sleep(0.2)
            finally:
                close_all(pool)
                await peer.stop()
            return fan_outs
        fan_outs = run_on_own_loop(measure)
        deadline = time.monotonic() + 5
        while len(_read_lines(out)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop()
    plain, profiled = _read_lines(out)[:2]
    # The kernel's time (mostly the socket writes) and the collector's are measured directly.
    # The rest, Python in user space, is shared out in cProfile's proportions, leaving out the
    # write calls themselves: cProfile counts the system call inside them, already shown.
    python_s = max(0.0, plain["user_s"] - plain["gc_s"])
    groups = {g: t for g, t in profiled.get("groups_s", {}).items() if g != "socket writes"}
    total = sum(groups.values()) or 1.0
    cpu = {"kernel: socket writes, TCP": plain["system_s"], "garbage collector": plain["gc_s"]}
    cpu.update({group: python_s * seconds / total
                for group, seconds in sorted(groups.items(), key=lambda kv: -kv[1])})
    return {"n": n, "lean": lean, "max_ms": fan_outs[0]["max_ms"],
            "delivered": fan_outs[0]["delivered"], "user_s": plain["user_s"],
            "system_s": plain["system_s"], "gc_s": plain["gc_s"],
            "collections": plain["collections"], "cpu": cpu,
            "python_shares": {group: seconds / total for group, seconds in groups.items()},
            "top": profiled.get("top", []),
            "top_cumulative": profiled.get("top_cumulative", []),
            "pstats": str(out) + ".pstats"}


def _read_lines(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return []
