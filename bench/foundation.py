"""The foundation's figures in about a minute: launch time, delivery latency, requests per event.

    .venv/bin/python -m bench.foundation

For each bundled server it measures how long `launch()` takes until `/health` answers (median
of 5), the delivery latency of one long-poll client (median and p95 over 60 events, measured
from each event's own timestamp), and requests per delivered event for a 1 s short poll and
for long polling while events are sparse (one every 3 s or so).
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from helpers import LongPollClient, Metrics, launch, measure
from helpers.metrics import percentile

SERVERS = {  # what launch() is given, by the name printed
    "asyncio (fastapi_server)": ("asyncio", {}),
    "naive (flask_server, check 1.0 s)": ("naive", {"check_interval": 1.0}),
    "naive (flask_server, check 0.05 s)": ("naive", {"check_interval": 0.05}),
}


def launch_seconds(kind: str, options: dict[str, Any], rounds: int = 5) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        server = launch(kind, **options)
        times.append(time.perf_counter() - started)
        server.stop()
    return statistics.median(times)


def long_poll_latency_ms(kind: str, options: dict[str, Any], events: int = 60) -> list[float]:
    """One client; events published one at a time, at a random moment after the last arrived.

    The moment is uniform over one second, so it falls anywhere in a 1 s check interval of the
    naive server, whose next check is due 1 s after the client's new poll arrived.
    """
    rng = random.Random(7)
    with launch(kind, hold=30, **options) as server:
        metrics = Metrics()
        with LongPollClient(server.url, hold=30, metrics=metrics):
            for n in range(events):
                time.sleep(rng.uniform(0.02, 1.02))
                server.trigger()
                deadline = time.monotonic() + 5
                while metrics.summary()["events"] <= n and time.monotonic() < deadline:
                    time.sleep(0.002)
        return sorted(ms for _, ms in metrics.latencies_ms())


def main() -> None:
    print("server                                launch s   latency p50 ms   p95 ms   events",
          flush=True)
    for name, (kind, options) in SERVERS.items():
        ready = launch_seconds(kind, options)
        latencies = long_poll_latency_ms(kind, options)
        print(f"{name:<38}{ready:>8.2f}{percentile(latencies, 50):>16.1f}"
              f"{percentile(latencies, 95):>10.1f}{len(latencies):>8}", flush=True)
    print("\nrequests per delivered event, sparse events (about 1 every 3 s, 30 s, 1 client):")
    with launch("short") as flask, launch("asyncio") as fastapi:
        for label, server, settings in [
            ("short poll every 1 s (flask_server)", flask, {"strategy": "short", "interval": 1.0}),
            ("long poll, hold 30 s (fastapi_server)", fastapi, {"strategy": "long", "hold": 30}),
            ("long poll, hold 30 s (flask_server)", flask, {"strategy": "long", "hold": 30}),
        ]:
            summary = measure(server, 30, rate=1 / 3, **settings)
            print(f"  {label:<40}{summary['requests_per_event']:>6.2f}  "
                  f"({summary['requests']} requests, {summary['events']} events)", flush=True)


if __name__ == "__main__":
    main()
