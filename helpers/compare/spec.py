"""What a lane is, and what every lane is asked to do: the lanes, the scenario and its presets.

A lane is a server kind from the kit's catalogue (`helpers.kinds`) with its start options, and
its clients use that kind's strategy (`LaneSpec`, the four in `LANES`; the streams' two in
`STREAM_LANES`). A `Scenario` holds the
knobs every lane shares, and a `Preset` is a scenario from the article's use cases with a
paragraph on what to look for. Nothing here starts anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from helpers.kinds import Kind, Strategy, find_kind


@dataclass(frozen=True)
class LaneSpec:
    """What a lane runs: a server kind (a name in `helpers.kinds.KINDS`) and its start options.

    Its clients use the kind's strategy. Raises ValueError for a kind the catalogue does not
    have, or one that is not a server of events (the proxy).
    """

    name: str
    title: str
    kind: str
    color: str
    linestyle: str  # lanes with equal numbers draw on top of each other: dashes keep both visible
    threaded: bool | None = None  # the Flask server's threading; None for a kind without it
    #: "sse" or "ws": the clients open a stream instead of polling (the asyncio server only)
    delivery: Strategy | None = None

    def __post_init__(self) -> None:
        server = find_kind(self.kind)
        if server.strategy is None:
            raise ValueError(f"A lane needs a server of events; {self.kind!r} is "
                             f"{server.title}.")
        if self.delivery is not None and not (self.delivery in ("sse", "ws")
                                              and server.module == "servers.fastapi_server"):
            raise ValueError(f"A lane's delivery is 'sse' or 'ws' on the asyncio server, not "
                             f"{self.delivery!r} on {self.kind!r}.")
        if self.threaded is not None and not server.takes("threaded"):
            raise ValueError(f"The {self.kind!r} server has no threaded option.")

    @property
    def server(self) -> Kind:
        """The catalogue's facts about this lane's server kind."""
        return find_kind(self.kind)

    @property
    def strategy(self) -> Strategy:
        """How this lane's clients ask: the strategy its server kind is launched for."""
        strategy = self.delivery or self.server.strategy
        assert strategy is not None, "checked in __post_init__"
        return strategy

    @property
    def naive(self) -> bool:
        """True for a sleep-loop long poll, whose check interval is a start option."""
        return self.strategy == "long" and self.server.sleeps

    def launch_options(self, scenario: Scenario) -> dict[str, Any]:
        options: dict[str, Any] = {"hold": scenario.hold}
        if self.threaded is not None:
            options["threaded"] = self.threaded
        if self.naive:
            options["check_interval"] = scenario.check_interval
        return options

    def delivery_wait(self, scenario: Scenario) -> float:
        """The longest a delivery takes, working as designed, once its event is published.

        A short poll waits for the client's next request, a sleep loop for the server's next
        check; a server that is woken answers its polls at once.
        """
        if self.strategy == "short":
            return scenario.interval
        return scenario.check_interval if self.server.sleeps else 0.0


#: The lanes, in the order every table and plot shows them.
LANES: dict[str, LaneSpec] = {spec.name: spec for spec in (
    LaneSpec("short", "short polling (Flask /events)", "short", "tab:orange", "-",
             threaded=True),
    LaneSpec("naive", "naive long poll, threaded Flask", "naive", "tab:purple", "-",
             threaded=True),
    LaneSpec("naive-single", "naive long poll, single-threaded Flask", "naive", "tab:red",
             "-.", threaded=False),
    LaneSpec("asyncio", "asyncio long poll (FastAPI)", "asyncio", "tab:green", "--"),
)}

#: Two more lanes, not run by default: the asyncio server's streams on the same trigger.
STREAM_LANES: dict[str, LaneSpec] = {spec.name: spec for spec in (
    LaneSpec("sse", "Server-Sent Events (FastAPI /sse)", "asyncio", "tab:cyan", ":",
             delivery="sse"),
    LaneSpec("ws", "WebSocket (FastAPI /ws)", "asyncio", "tab:olive", ":", delivery="ws"),
)}
#: Every lane there is, by name: LANES, then STREAM_LANES.
EVERY_LANE: dict[str, LaneSpec] = {**LANES, **STREAM_LANES}


@dataclass(frozen=True)
class Scenario:
    """The knobs, the same for every lane. Each lane uses the ones its strategy has."""

    clients: int = 3  # simulated clients per lane
    rate: float = 1.0  # fan-outs per second from the auto-trigger (0: manual triggers only)
    interval: float = 1.0  # short polling: seconds between one client's requests
    hold: float = 10.0  # long polling: how long a server may hold a request, seconds
    check_interval: float = 1.0  # the naive server's sleep between checks (a start option)

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.clients <= 1000:
            problems.append(f"clients must be from 1 to 1000 per lane, not {self.clients}")
        if not 0 <= self.rate <= 50:
            problems.append(f"rate must be from 0 to 50 events per second, not {self.rate}")
        if not 0.05 <= self.interval <= 60:
            problems.append(f"interval must be from 0.05 to 60 seconds, not {self.interval}")
        if not 0 < self.hold <= 300:
            problems.append(f"hold must be more than 0 and at most 300 seconds, not {self.hold}")
        if not 0.01 <= self.check_interval <= 10:
            problems.append(f"check_interval must be from 0.01 to 10 seconds, not "
                            f"{self.check_interval}")
        if problems:
            raise ValueError("; ".join(problems) + ".")

    def describe(self) -> str:
        """The scenario in one line, with units."""
        return (f"{self.clients:,} client{'s' if self.clients != 1 else ''} per lane, "
                f"{self.rate:g} events/s, short polls every {self.interval:g} s, long polls "
                f"held up to {self.hold:g} s, naive check every {self.check_interval:g} s")


@dataclass(frozen=True)
class Preset:
    """A scenario from the article's use cases, and what to look for when it runs."""

    name: str
    scenario: Scenario
    description: str


PRESETS: dict[str, Preset] = {preset.name: preset for preset in (
    Preset("sparse notifications",
           Scenario(clients=20, rate=0.1, interval=1.0, hold=30.0, check_interval=1.0),
           "A notification every ten seconds or so, and twenty users waiting for it. Short "
           "polling asks every second, so look at its requests per event (about ten) and its "
           "empty responses (around 90 %): that is the waste long polling removes, since the "
           "long-poll lanes need about one request per event. Then compare latency. Short "
           "polling pays about half its interval, and so does the naive long poll with the "
           "article's 1 s check: it saves requests but is no faster. The asyncio lane takes a "
           "few milliseconds. The single-threaded lane can hold only one request at a time, so "
           "even the trigger waits behind a 30 s hold, and few notifications, if any, get "
           "through."),
    Preset("chat burst",
           Scenario(clients=20, rate=5.0, interval=1.0, hold=30.0, check_interval=0.5),
           "A busy chat room: five messages a second, and the Burst button posts twenty at "
           "once. Now the picture turns around. The asyncio lane answers every message on its "
           "own, so it makes about one request per message per user and the most requests per "
           "second, while short polling and the naive loop collect several messages per answer "
           "and need fewer than one request per message. Look at the latency columns to see "
           "what that batching costs, and at the load generator's CPU: when it nears "
           "100 % of a core, the clients themselves are the bottleneck."),
    Preset("1000 idle dashboards",
           Scenario(clients=1000, rate=0.05, interval=5.0, hold=30.0, check_interval=1.0),
           "A thousand monitoring dashboards left open, with a status change every twenty "
           "seconds or so. Look at the server columns. The asyncio server holds a thousand "
           "requests with a handful of threads and little extra memory; the threaded Flask "
           "server holds them with one thread each; short polling holds nothing but answers "
           "about 200 requests a second, almost all of them empty; the single-threaded server "
           "holds one and leaves the rest waiting in line, so they time out. Four thousand "
           "clients are a real load for one kernel too: check the load generator's CPU before "
           "blaming a server."),
)}


def find_preset(name: str) -> Preset:
    """The preset called `name`; case, dashes and underscores are ignored ("chat-burst")."""
    wanted = " ".join(name.lower().replace("-", " ").replace("_", " ").split())
    for preset in PRESETS.values():
        if preset.name == wanted:
            return preset
    raise ValueError(f"Unknown preset {name!r}; choose one of: "
                     + ", ".join(repr(p) for p in PRESETS) + ".")


def parse_lanes(lanes: str | Iterable[str]) -> list[str]:
    """Lane names from "short,asyncio" or a list, in the standard order; raise if unknown."""
    names = [n.strip() for n in (lanes.split(",") if isinstance(lanes, str) else lanes)]
    unknown = [n for n in names if n not in EVERY_LANE]
    if unknown or not names:
        raise ValueError(f"Unknown lane(s) {', '.join(unknown) or '(none given)'}; choose from "
                         f"{', '.join(EVERY_LANE)}, separated by commas.")
    return [n for n in EVERY_LANE if n in names]
