"""The asyncio server with a stopwatch: where does one fan-out's CPU time go?

    python -m helpers.scaling.profile_server --profile-out PATH [any servers.fastapi_server flag]

This is `servers.fastapi_server`, unchanged, plus three signals that notebook 05 (through
`helpers.scaling.profile_fan_out`) sends around one fan-out:

* SIGUSR1 starts a plain measurement: CPU time in user space and in the kernel (`os.times`),
  and the time the cyclic garbage collector ran (`gc.callbacks`);
* SIGRTMIN starts the same measurement with `cProfile` switched on as well, which splits the
  Python time by package (it slows Python code down, so use it for proportions only);
* SIGUSR2 stops and writes what was measured, as one JSON line appended to PATH.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import signal
import time
from collections import defaultdict
from types import FrameType
from typing import Any

from servers import fast_path, fastapi_server

WRITES = "socket writes"  # `OneWrite`: its time is mostly the kernel's, which os.times shows
#: (group, fragments of a profiled function's file or name that put it in the group)
GROUPS = [
    ("framework (FastAPI, Starlette)", ("/fastapi/", "/starlette/", "/anyio/", "/pydantic")),
    ("HTTP server (uvicorn, httptools)", ("/uvicorn/", "httptools")),
    ("event loop (asyncio, uvloop)", ("asyncio", "uvloop", "_contextvars")),
    ("the kit's own code (servers/)", ("/servers/",)),
]
OTHER = "other Python (json, bytes, ...)"


def _write_lines() -> tuple[int, int]:
    """The source lines of fast_path.OneWrite, whose methods make the socket writes."""
    import inspect

    lines, first = inspect.getsourcelines(fast_path.OneWrite)
    return first, first + len(lines)


WRITE_LINES = _write_lines()


def group_of(filename: str, name: str, line: int = 0) -> str:
    if filename.endswith("fast_path.py") and line >= WRITE_LINES[0] and (
            line <= WRITE_LINES[1]):
        return WRITES
    text = filename if filename != "~" else name
    for group, fragments in GROUPS:
        if any(fragment in text for fragment in fragments):
            return group
    return OTHER


class Stopwatch:
    """Measures between two signals; see the module docstring."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.profile: cProfile.Profile | None = None
        self.gc_s = 0.0
        self.collections = 0
        self._gc_started = 0.0
        self._times = os.times()
        self._wall = 0.0
        self.running = False

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if not self.running:
            return
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_s += time.perf_counter() - self._gc_started
            self.collections += 1

    def start(self, profiled: bool) -> None:
        self.gc_s, self.collections = 0.0, 0
        self.profile = cProfile.Profile() if profiled else None
        self._times, self._wall = os.times(), time.perf_counter()
        self.running = True
        if self.profile is not None:
            self.profile.enable()

    def stop(self) -> None:
        if not self.running:
            return
        if self.profile is not None:
            self.profile.disable()
        self.running = False
        now = os.times()
        result: dict[str, Any] = {
            "wall_s": time.perf_counter() - self._wall,
            "user_s": now.user - self._times.user,
            "system_s": now.system - self._times.system,
            "gc_s": self.gc_s,
            "collections": self.collections,
            "profiled": self.profile is not None,
        }
        if self.profile is not None:
            stats = pstats.Stats(self.profile)
            groups: dict[str, float] = defaultdict(float)
            functions = []
            raw: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
            for (filename, line, name), (_, calls, tottime, cumtime, _) in raw.items():
                group = group_of(filename, name, line)
                groups[group] += tottime
                functions.append((tottime, cumtime, calls, group,
                                  f"{name} ({os.path.basename(filename)}:{line})"
                                  if filename != "~" else name))
            result["groups_s"] = dict(groups)
            result["top"] = [{"tottime_s": t, "cumtime_s": cum, "calls": c, "group": g,
                              "function": f}
                             for t, cum, c, g, f in sorted(functions, reverse=True)[:15]]
            result["top_cumulative"] = [
                {"cumtime_s": cum, "tottime_s": t, "calls": c, "group": g, "function": f}
                for t, cum, c, g, f in sorted(functions, key=lambda row: -row[1])[:25]]
            stats.dump_stats(self.out + ".pstats")  # the whole profile, for pstats or snakeviz
        with open(self.out, "a") as f:
            f.write(json.dumps(result) + "\n")


def main(argv: list[str] | None = None) -> None:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--profile-out", required=True, metavar="PATH")
    args, rest = own.parse_known_args(argv)
    watch = Stopwatch(args.profile_out)
    gc.callbacks.append(watch.on_gc)

    def handler(profiled: bool) -> Any:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            watch.start(profiled)
        return on_signal

    signal.signal(signal.SIGUSR1, handler(False))
    signal.signal(signal.SIGRTMIN, handler(True))
    signal.signal(signal.SIGUSR2, lambda signum, frame: watch.stop())
    fastapi_server.main(rest)


if __name__ == "__main__":
    main()
