"""The benchmark's plan, its time budget, and the run that writes results/bench-<date>.*.

Every measurement starts its own fresh server and stops it afterwards (the kit's servers with
`helpers.launch`, nginx by its process group), so one measurement's leftovers cannot leak into
the next. A global deadline stops the run from starting new measurements, and each measurement
has its own timeout; what is skipped or fails is recorded and reported, never hidden.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import sysconfig
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import scenarios, streams
from bench.nchan import NchanPeer, find_nchan
from bench.report import markdown
from helpers.kinds import KINDS, Kind
from helpers.launcher import raise_open_file_limit
from helpers.scaling.fanout import HOLD_S, measure_fan_out
from helpers.scaling.peers import KitPeer

SCENARIOS = ("fanout", "latency", "memory", "rpe", "throughput", "streams")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Options:
    quick: bool = False
    only: list[str] = field(default_factory=lambda: list(SCENARIOS))
    nchan: bool = True
    servers: list[str] = field(default_factory=list)  # empty: all of SERVERS
    deadline_s: float = 840.0
    out: str = "results"


#: label (as results files and reports name it) -> (the kind launched, its options). The
#: "flask" rows are the naive sleep-loop long poll.
#: The asyncio servers get a long `request_timeout`: on a loaded machine, opening 10,000
#: connections took more than its default 10 s, and the first ones were closed with a 408
#: before their poll was sent.
SLOW_OPEN = {"request_timeout": 120}
KIT_SERVERS: dict[str, tuple[Kind, dict[str, Any]]] = {
    "fastapi": (KINDS["asyncio"], {**SLOW_OPEN}),
    "fastapi --lean": (KINDS["asyncio"], {"lean": True, **SLOW_OPEN}),
    "flask check=1.0s": (KINDS["naive"], {"check_interval": 1.0}),
    "flask check=0.05s": (KINDS["naive"], {"check_interval": 0.05}),
}
NCHAN = "nchan"
SERVERS = (*KIT_SERVERS, NCHAN)


def sleeps(label: str) -> bool:
    """Whether the server `label` is a sleep loop (one thread per held poll, a check interval)."""
    return label in KIT_SERVERS and KIT_SERVERS[label][0].sleeps


class Progress:
    """Progress lines on stderr, each stamped with the seconds since the run started."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f} s] {text}", file=sys.stderr, flush=True)


def _where(exc: BaseException) -> str:
    """The innermost function outside the standard library that a timeout was raised in, and
    its message if any."""
    stdlib = sysconfig.get_paths()["stdlib"]
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith(stdlib)]
    place = f"in {frames[-1].name}" if frames else "in the measurement"
    return f"{place}: {exc}" if str(exc) else place


class Bench:
    """One run: the plan, the deadline, the Nchan location, and everything measured."""

    def __init__(self, options: Options, say: Progress) -> None:
        self.options = options
        self.say = say
        self.deadline = time.monotonic() + options.deadline_s
        wanted = options.nchan and (not options.servers or NCHAN in options.servers)
        found = find_nchan() if wanted else "left out (--no-nchan or --servers)"
        self.nchan: tuple[str, str] | None = found if isinstance(found, tuple) else None
        self.nchan_missing = found if isinstance(found, str) else None
        self.results: dict[str, Any] = {"fanout": [], "latency": [], "rpe": [],
                                        "throughput": [], "streams": [], "skipped": []}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def labels(self) -> list[str]:
        """The servers to measure, Nchan last (when it is installed and wanted)."""
        chosen = self.options.servers or list(KIT_SERVERS)
        return [label for label in KIT_SERVERS if label in chosen] + (
            [NCHAN] if self.nchan else [])

    @contextlib.asynccontextmanager
    async def peer(self, label: str) -> AsyncIterator[Any]:
        """A freshly started server, stopped (and reaped) however the block ends."""
        started: Any
        if label == NCHAN:
            assert self.nchan is not None
            started = NchanPeer(*self.nchan, hold=HOLD_S, label=label)
        else:
            kind, options = KIT_SERVERS[label]
            started = KitPeer(label, kind.name, hold=HOLD_S, **options)
        try:
            await started.start()
            yield started
        finally:
            await started.stop()

    async def measure(self, scenario: str, label: str, what: str, needs_s: float,
                      timeout_s: float,
                      body: Callable[[Any], Awaitable[dict[str, Any]]]) -> dict[str, Any] | None:
        """Run one measurement on a fresh `label` server, within the deadline and `timeout_s`.

        Returns its result with `server` added, or None when it was skipped or failed (both are
        recorded in results["skipped"] with the reason).
        """
        name = f"{scenario} | {label} | {what}"
        if self.left() < needs_s:
            self._skip(name, f"the run's deadline is {self.left():.0f} s away; this needs "
                             f"about {needs_s:.0f} s")
            return None
        self.say(name)
        began, limit_s = time.monotonic(), min(timeout_s, self.left() + 30)
        try:
            async with self.peer(label) as peer:
                result = await asyncio.wait_for(body(peer), limit_s)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            took_s = time.monotonic() - began
            if took_s < limit_s - 1:
                # Not this measurement's limit but a wait inside it (a reply to one request,
                # the crowd connecting): name it, as "did not finish" would blame the budget.
                self._skip(name, f"a wait inside it timed out after {took_s:.0f} s "
                                 f"({_where(exc)}); the machine may be too busy to measure")
            else:
                self._skip(name, f"did not finish within {limit_s:.0f} s")
            return None
        except Exception as exc:  # noqa: BLE001 - one broken measurement must not end the run
            self._skip(name, f"failed: {type(exc).__name__}: {exc}")
            return None
        result = {"server": label, **result}
        self.results[scenario].append(result)
        return result

    def _skip(self, name: str, reason: str) -> None:
        self.say(f"SKIPPED {name}: {reason}")
        self.results["skipped"].append({"what": name, "reason": reason})

    # --- the plan ---------------------------------------------------------------------------

    async def run(self) -> None:
        quick = self.options.quick
        only = self.options.only
        if self.nchan is None:
            self.say(f"Nchan reference SKIPPED: {self.nchan_missing}")
            self.results["skipped"].append({"what": "nchan", "reason": self.nchan_missing})
        if "fanout" in only or "memory" in only:
            await self.fan_outs(quick)
        if "latency" in only:
            await self.latencies(quick)
        if "throughput" in only:
            await self.throughputs(quick)
        if "rpe" in only:
            await self.requests_per_event(quick)
        if "streams" in only:
            await self.stream_fan_outs(quick)

    async def fan_outs(self, quick: bool) -> None:
        """Scenario 1 (and 3, memory, which is read during it)."""
        big = [300, 1000] if quick else [1_000, 5_000, 10_000]
        small = [30, 100] if quick else [100, 1_000]
        rounds = 2 if quick else 5
        for label in self.labels():
            sizes = small if sleeps(label) else big
            jitter = KIT_SERVERS[label][1].get("check_interval", 0.0) if sleeps(label) else 0.0
            for n in sizes:
                async def body(peer: Any, n: int = n, jitter: float = jitter
                               ) -> dict[str, Any]:
                    return await measure_fan_out(peer, n, rounds=rounds, jitter=jitter,
                                                   say=self.sub)
                result = await self.measure("fanout", label, f"N={n:,}",
                                            needs_s=5 + n / 500, timeout_s=60 + n / 50,
                                            body=body)
                if result is not None and result["delivered"] < n:
                    break  # it could not deliver to this many: larger N would only fail longer

    async def latencies(self, quick: bool) -> None:
        """Scenario 2: one subscriber, one event at a time."""
        for label in self.labels():
            check = KIT_SERVERS[label][1].get("check_interval") if sleeps(label) else None
            events = 30 if quick else 200
            if check is not None and check >= 0.5:
                events = 10 if quick else 40  # each event waits for the next check: ~1 s each
            jitter = check if check is not None else 0.005

            async def body(peer: Any, events: int = events, jitter: float = jitter
                           ) -> dict[str, Any]:
                return await scenarios.delivery_latency(peer, events, jitter=jitter,
                                                        say=self.sub)
            await self.measure("latency", label, f"{events} events",
                               needs_s=3 + events * (jitter + 0.05) * 1.5,
                               timeout_s=30 + events * (jitter * 2 + 0.2), body=body)

    async def throughputs(self, quick: bool) -> None:
        """Scenario 5: short-poll hits per second over 50 keep-alive connections."""
        seconds = 2.0 if quick else 5.0
        for label in self.labels():
            if label in ("fastapi --lean", "flask check=0.05s"):
                continue  # /events is the same code as in the row above it
            async def body(peer: Any) -> dict[str, Any]:
                return await scenarios.throughput(peer, 50, seconds, say=self.sub)
            result = await self.measure("throughput", label, "50 connections",
                                        needs_s=seconds + 5, timeout_s=seconds + 60, body=body)
            if result is not None and sleeps(label):
                result["server"] = "flask"  # /events does not depend on the check interval

    async def requests_per_event(self, quick: bool) -> None:
        """Scenario 4: requests per delivered event, for each strategy, sparse and dense."""
        streams = {"sparse": (0.5, 8.0 if quick else 20.0), "dense": (20.0, 4.0 if quick else 8.0)}
        for strategy, label, settings in scenarios.STRATEGIES:
            if self.options.servers and label not in self.options.servers:
                continue
            for density, (rate, seconds) in streams.items():
                async def body(peer: Any, rate: float = rate, seconds: float = seconds,
                               settings: dict[str, Any] = settings) -> dict[str, Any]:
                    return await scenarios.requests_per_event(peer, seconds=seconds, rate=rate,
                                                              **settings)
                result = await self.measure("rpe", label, f"{strategy}, {density} "
                                            f"({rate:g} events/s)", needs_s=seconds + 5,
                                            timeout_s=seconds + 60, body=body)
                if result is not None:
                    result.update(strategy=strategy, density=density)

    async def stream_fan_outs(self, quick: bool) -> None:
        """Scenario 6: one event to N SSE or WebSocket subscribers, ours and Nchan's."""
        sizes = [1, 300, 1_000] if quick else [1, 1_000, 5_000, 10_000]
        labels = ["fastapi", *([NCHAN] if self.nchan else [])]
        for protocol in streams.PROTOCOLS:
            for label in labels:
                for n in sizes:
                    async def body(peer: Any, protocol: streams.Protocol = protocol,
                                   n: int = n, label: str = label) -> dict[str, Any]:
                        return await streams.stream_fan_out(
                            peer, protocol, n, rounds=20 if n == 1 else (2 if quick else 3),
                            kit=label != NCHAN, say=self.sub)
                    await self.measure("streams", label, f"{protocol} N={n:,}",
                                       needs_s=5 + n / 1000, timeout_s=60 + n / 50, body=body)

    def sub(self, text: str) -> None:
        self.say("  " + text.strip())


def environment(options: Options, nofile: tuple[int, int]) -> dict[str, Any]:
    """What the numbers were measured on: machine, load, versions, limits, commit."""
    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return ""

    loop = f"uvloop {version('uvloop')}" if version("uvloop") else "asyncio"
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = _git("rev-parse", "--short", "HEAD")
    if commit and _git("status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    return {
        "command": "make bench" if not options.quick else "python -m bench --quick",
        "argv": sys.argv[1:],
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "python": platform.python_version(),
        "client_loop": loop,
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "open_file_limit": list(nofile),
        "versions": {name: version(name) for name in ("fastapi", "uvicorn", "flask")},
        "commit": commit,
    }


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                              timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _nginx_version(nginx: str) -> str:
    try:
        done = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (done.stderr or done.stdout).strip().split(":", 1)[-1].strip()


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed (it is, with uvicorn[standard]): less client overhead."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def run(options: Options) -> int:
    """Run the benchmark, write results/bench-<date>.json and .md; 0 unless nothing ran."""
    say = Progress()
    nofile = raise_open_file_limit()
    bench = Bench(options, say)
    env = environment(options, nofile)
    if bench.nchan is not None:
        env["versions"]["nginx"] = _nginx_version(bench.nchan[0])
        env["nchan_module"] = bench.nchan[1]
    say(f"polling-lab bench: scenarios {', '.join(options.only)}; deadline "
        f"{options.deadline_s:.0f} s; open-file limit {nofile[0]}; load average "
        f"{env['load_average_before']}")
    try:
        _run_loop(bench.run())
    except KeyboardInterrupt:
        say("interrupted: writing what was measured so far")
    env["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    env["duration_s"] = round(time.monotonic() - say.started, 1)
    results = {"environment": env, **bench.results}
    out = Path(options.out)
    if not out.is_absolute():
        out = PROJECT_ROOT / out
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(results))
    say(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")
    print(markdown(results))
    measured = sum(len(bench.results[s]) for s in ("fanout", "latency", "rpe", "throughput"))
    return 0 if measured else 1
