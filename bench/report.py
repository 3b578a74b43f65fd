"""Turn a benchmark's results (the JSON that `python -m bench` writes) into markdown tables.

Each of the kit's figures is also given as a ratio to Nchan's figure from the same run and the
same N: for times and memory, 2.0× means twice Nchan's (worse); for throughput, 0.5× means half
as many requests per second (worse).
"""

from __future__ import annotations

import math
from typing import Any

from bench.streams import report_lines as stream_report_lines
from helpers.metrics import percentile

NCHAN = "nchan"
TARGET_N = 10_000
TARGET_RATIO = 3.0
TARGET_P50_MS = 2.0
TARGET_KIB = 25.0
KIT_ASYNCIO = ("fastapi", "fastapi --lean")


def _num(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def _ms(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.2f}" if value < 10 else f"{value:,.0f}"


def _median(values: list[float]) -> float | None:
    """The median of the rounds' figures (`helpers.metrics.percentile`); None for no rounds."""
    return percentile(sorted(values), 50) if values else None


def _ratio(value: Any, reference: Any) -> str:
    if not value or not reference:
        return "–"
    return f"{value / reference:.1f}×"


def _vs(row: dict[str, Any], reference: dict[str, Any] | None, key: str) -> str:
    """`row[key]` as a multiple of `reference[key]`; blank on Nchan's own row."""
    if row["server"] == NCHAN:
        return ""
    return _ratio(row[key], reference[key] if reference else None)


def _find(rows: list[dict[str, Any]], server: str, **match: Any) -> dict[str, Any] | None:
    for row in rows:
        if row["server"] == server and all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The brief's targets for the asyncio server, each with the measured figure and a verdict.

    `ok` is None when a figure is missing (not measured in this run).
    """
    fanout, latency = results.get("fanout", []), results.get("latency", [])
    nchan = _find(fanout, NCHAN, n=TARGET_N)
    checks = []
    for server in KIT_ASYNCIO:
        row = _find(fanout, server, n=TARGET_N)
        if row is None or nchan is None:
            ok, shown = None, "not measured in this run"
        else:
            ratio = row["max_ms"] / nchan["max_ms"]
            ok = row["delivered"] == TARGET_N and ratio <= TARGET_RATIO
            shown = (f"{row['delivered']:,}/{TARGET_N:,} delivered, max {_ms(row['max_ms'])} ms "
                     f"= {ratio:.1f}× Nchan's {_ms(nchan['max_ms'])} ms")
        checks.append({"server": server, "target": f"fan-out to {TARGET_N:,}: all delivered, "
                       f"max ≤ {TARGET_RATIO:g}× Nchan", "ok": ok, "measured": shown})
        lat = _find(latency, server)
        checks.append({"server": server, "target": f"one subscriber: p50 ≤ {TARGET_P50_MS:g} ms",
                       "ok": None if lat is None else lat["p50_ms"] <= TARGET_P50_MS,
                       "measured": "not measured in this run" if lat is None else
                       f"p50 {_ms(lat['p50_ms'])} ms over {lat['events']} events"})
        biggest = max((r for r in fanout if r["server"] == server), key=lambda r: r["n"],
                      default=None)
        checks.append({"server": server, "target": f"≤ {TARGET_KIB:g} KiB RSS per held "
                       "connection", "ok": None if biggest is None else
                       biggest["kib_per_held"] <= TARGET_KIB,
                       "measured": "not measured in this run" if biggest is None else
                       f"{biggest['kib_per_held']:.1f} KiB (N={biggest['n']:,})"})
    return checks


def markdown(results: dict[str, Any]) -> str:
    env = results.get("environment", {})
    out = [f"# Polling Lab benchmark, {env.get('started', '')}", ""]
    versions = ", ".join(f"{k} {str(v).removeprefix(k + '/')}"
                         for k, v in env.get("versions", {}).items())
    out += [
        f"Command: `{env.get('command', 'make bench')}`"
        + (f" (`python -m bench {' '.join(env['argv'])}`)" if env.get("argv") else "")
        + f", {env.get('duration_s', '?')} s. Commit {env.get('commit') or '?'}.",
        "",
        f"Machine: {env.get('cpu', '?')}, {env.get('cpus', '?')} CPUs; load average "
        f"{env.get('load_average_before', '?')} before, {env.get('load_average_after', '?')} "
        f"after. Python {env.get('python', '?')}, load client on {env.get('client_loop', '?')}; "
        f"{versions}. Open-file limit {env.get('open_file_limit', '?')}.",
        "",
        "Every server runs alone, freshly started, on loopback, as one process (nginx: one "
        "worker); the load client is one process on the other core. Times run from just before "
        "the publish request is written to the moment a response's last byte is read. "
        "**× Nchan** divides a figure by Nchan's at the same N: above 1 is worse for times and "
        "memory, below 1 is worse for throughput.",
        "",
    ]
    checks = targets(results)
    if checks:
        out += ["## Targets for the asyncio server", "",
                "| server | target | measured | met |", "|---|---|---|---|"]
        for c in checks:
            verdict = {True: "yes", False: "**no**", None: "–"}[c["ok"]]
            out.append(f"| {c['server']} | {c['target']} | {c['measured']} | {verdict} |")
        out.append("")

    fanout = results.get("fanout", [])
    if fanout:
        out += ["## 1 · Fan-out: one event to N held long polls", "",
                "Median of the rounds (each round: hold N polls, publish one event, time every "
                "answer). Server and client CPU are the seconds each process used during a "
                "round's fan-out.", "",
                "| server | N | delivered | p50 ms | p99 ms | max ms | max × Nchan | "
                "server CPU s | client CPU s | took N polls in s |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in fanout:
            nchan = _find(fanout, NCHAN, n=r["n"])
            rounds = r.get("rounds", [])
            cpu = _median([x["server_cpu_s"] for x in rounds])
            client = _median([x.get("client_cpu_s", math.nan) for x in rounds])
            held = _median([x.get("all_held_after_s", math.nan) for x in rounds])
            out.append(
                f"| {r['server']} | {r['n']:,} | {r['delivered']:,} | {_ms(r['p50_ms'])} | "
                f"{_ms(r['p99_ms'])} | {_ms(r['max_ms'])} | "
                f"{_vs(r, nchan, 'max_ms')} | {_num(cpu, 2)} | {_num(client, 2)} | "
                f"{_num(held, 2)} |")
        out.append("")

    latency = results.get("latency", [])
    if latency:
        nchan = _find(latency, NCHAN)
        out += ["## 2 · Delivery latency, one subscriber", "",
                "One held poll, one publish, one answer, over and over. For the sleep-loop "
                "servers the publish comes at a random moment of the check interval.", "",
                "| server | events | p50 ms | p99 ms | max ms | p50 × Nchan | p99 × Nchan |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for r in latency:
            out.append(f"| {r['server']} | {r['events']} | {_ms(r['p50_ms'])} | "
                       f"{_ms(r['p99_ms'])} | {_ms(r['max_ms'])} | {_vs(r, nchan, 'p50_ms')} | "
                       f"{_vs(r, nchan, 'p99_ms')} |")
        out.append("")

    if fanout:
        out += ["## 3 · Memory: resident memory per held connection", "",
                "RSS of the server's processes (nginx: master and worker) before the clients "
                "connect, and with N polls held. Kernel socket buffers are not in RSS.", "",
                "| server | N | RSS idle MiB | RSS held MiB | KiB per held | × Nchan | threads "
                "idle → held |", "|---|---:|---:|---:|---:|---:|---:|"]
        for r in fanout:
            nchan = _find(fanout, NCHAN, n=r["n"])
            out.append(
                f"| {r['server']} | {r['n']:,} | {r['rss_idle_kib'] / 1024:,.1f} | "
                f"{r['rss_held_kib'] / 1024:,.1f} | {r['kib_per_held']:.1f} | "
                f"{_vs(r, nchan, 'kib_per_held')} | {r['threads_idle']} → {r['threads_held']} |")
        out.append("")

    rpe = results.get("rpe", [])
    if rpe:
        out += ["## 4 · Requests per delivered event", "",
                "`helpers.measure` (the notebooks' engine): 5 clients, events published at about "
                "the given rate; requests divided by events delivered (to all clients).", "",
                "| strategy | server | density | events/s | requests per event | empty % | "
                "latency p50 ms |", "|---|---|---|---:|---:|---:|---:|"]
        for r in rpe:
            out.append(f"| {r.get('strategy', '')} | {r['server']} | {r.get('density', '')} | "
                       f"{r['rate']:g} | {_num(r['requests_per_event'], 2)} | "
                       f"{_num(r['empty_pct'], 0)} | {_ms(r['latency_ms_p50'])} |")
        out.append("")

    throughput = results.get("throughput", [])
    if throughput:
        nchan = _find(throughput, NCHAN)
        out += ["## 5 · Short-poll hits per second", "",
                "50 keep-alive connections, each asking again as soon as it is answered; every "
                "answer carries one event (Nchan: a long poll from the previous message, "
                "answered at once). Client CPU near 100 % means the client set the pace.", "",
                "| server | hits/s | × Nchan | server CPU, % of a core | client CPU, % of a "
                "core |", "|---|---:|---:|---:|---:|"]
        for r in throughput:
            out.append(f"| {r['server']} | {r['hits_per_s']:,.0f} | {_vs(r, nchan, 'hits_per_s')}"
                       f" | {r['server_cpu_pct']:.0f} | {r['client_cpu_pct']:.0f} |")
        out.append("")

    out += stream_report_lines(results.get("streams", []))

    skipped = results.get("skipped", [])
    if skipped:
        out += ["## Skipped or failed", ""]
        out += [f"- {s['what']}: {s['reason']}" for s in skipped]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    """python -m bench.report results/bench-<date>.json: print that run's tables again."""
    import json
    import sys

    paths = argv if argv is not None else sys.argv[1:]
    if len(paths) != 1:
        raise SystemExit("usage: python -m bench.report results/bench-<date>.json")
    with open(paths[0]) as f:
        print(markdown(json.load(f)))


if __name__ == "__main__":
    main()
