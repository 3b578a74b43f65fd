"""What a comparison measured, as typed records: one `LaneResult` per lane in a `ComparisonResult`.

The table, the figures and results.json all read these same named fields. `to_json()` is what
results.json holds (nan and inf become null, so the file is strict JSON) and `from_json()` reads
it back. Indexing a `ComparisonResult` (`results["lanes"]`) reads that same JSON form, which is
how notebook cells and scripts written for results.json use it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, TypeVar, cast, get_args, get_origin, get_type_hints

from helpers.compare.spec import Scenario
from helpers.kinds import Strategy
from helpers.metrics import percentile

NAN = float("nan")
R = TypeVar("R", bound="Record")
S = TypeVar("S", bound="Spread")
#: Field metadata for a field that results.json leaves out.
NOT_IN_JSON = {"json": False}


def jsonable(value: Any) -> Any:
    """`value` as strict JSON data: records and dataclasses become dicts, nan and inf None."""
    if isinstance(value, Record):
        return value.to_json()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def _decode(hint: Any, value: Any) -> Any:
    """`value`, read from JSON, as the type `hint` names (None back to nan for a float)."""
    if isinstance(hint, type) and is_dataclass(hint):
        return hint.from_json(value) if issubclass(hint, Record) else hint(**value)
    if hint is float:
        return NAN if value is None else float(value)
    origin, args = get_origin(hint), get_args(hint)
    if origin is tuple:
        return tuple(_decode(args[0], v) for v in value)
    if origin is dict:
        return {k: _decode(args[1], v) for k, v in value.items()}
    return value  # int, str, bool, a Literal, or an optional one of them: JSON holds it as is


class Record:
    """A frozen dataclass that writes itself as JSON and reads itself back."""

    def to_json(self) -> dict[str, Any]:
        """The fields (and `derived()` numbers) as results.json holds them."""
        out = {f.name: jsonable(getattr(self, f.name)) for f in fields(cast(Any, self))
               if f.metadata.get("json", True)}
        out.update(jsonable(self.derived()))
        return out

    def derived(self) -> dict[str, Any]:
        """Numbers computed from the fields that results.json holds as well."""
        return {}

    @classmethod
    def from_json(cls: type[R], data: Mapping[str, Any]) -> R:
        """The record `to_json()` wrote; fields it left out take their defaults."""
        hints = get_type_hints(cls)
        return cls(**{f.name: _decode(hints[f.name], data[f.name])
                      for f in fields(cast(Any, cls)) if f.name in data})


# --- percentiles -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread(Record):
    """Percentiles of some milliseconds (nan where there were none)."""

    p50: float = NAN
    p95: float = NAN
    max: float = NAN

    @classmethod
    def of(cls: type[S], values: Iterable[float], **other: Any) -> S:
        """The spread of `values`: every pNN field is that percentile, and `max` and `mean`."""
        ordered = sorted(values)
        numbers = {"max": ordered[-1] if ordered else NAN,
                   "mean": sum(ordered) / len(ordered) if ordered else NAN}
        for f in fields(cls):
            if f.name[0] == "p" and f.name[1:].isdigit():
                numbers[f.name] = percentile(ordered, int(f.name[1:]))
        return cls(**{f.name: numbers[f.name] for f in fields(cls) if f.name in numbers},
                   **other)



@dataclass(frozen=True)
class TailSpread(Spread):
    """A spread with its 99th percentile."""

    p99: float = NAN


@dataclass(frozen=True)
class LatencySpread(TailSpread):
    """Latencies in ms: the tail and the mean."""

    mean: float = NAN


@dataclass(frozen=True)
class Skew(Spread):
    """Publish skew in ms over the fan-outs that every one of `lanes` stamped (`events`)."""

    lanes: tuple[str, ...] = ()
    events: int = 0


@dataclass(frozen=True)
class PublishSkew(Record):
    """How far apart the servers stamped one event: across `all` lanes and the `concurrent` ones.

    `concurrent` leaves out single-threaded lanes, whose stamps are late whenever their one
    thread is busy holding a poll.
    """

    fanouts: int
    all: Skew
    concurrent: Skew


# --- the records ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelinePoint(Record):
    """One sample of the run: requests so far and per second per lane, and the load generator's CPU.

    The rates are averaged over the last RATE_WINDOW_S seconds.
    """

    t: float  # seconds since the measurement started
    requests: dict[str, int]
    requests_per_s: dict[str, float]
    kernel_cpu_pct: float  # the load generator (this process and its swarm's), % of one core


@dataclass(frozen=True)
class LaneResult(Record):
    """One lane's row: its numbers since the last reset. Latencies are in ms."""

    lane: str
    title: str
    server: str  # the server kind it launched
    strategy: Strategy
    threaded: bool | None
    clients: int
    triggered: int  # fan-outs since the last reset
    requests: int
    requests_per_s: float  # while events were triggered: the settling time would dilute it
    deliveries: int
    expected_deliveries: int  # triggered × clients
    requests_per_event: float  # per delivery; inf before the first one
    empty_pct: float
    delivered_pct: float
    latency_ms: LatencySpread  # receive time − the shared trigger moment
    latency_own_ms: TailSpread  # receive time − this server's own timestamp
    published: int
    dropped: int  # fan-outs this lane never published (stopped while queued)
    publish_errors: int
    last_publish_error: str | None
    publish_lag_ms: Spread  # this server's timestamp − the shared trigger moment
    stats_age_s: float | None  # how old the last GET /stats answer is; None before the first
    server_threads: int | None  # the last GET /stats answer
    server_rss_bytes: int | None
    server_waiting: int | None
    server_threads_max: int | None  # the highest GET /stats answer while clients ran
    server_rss_bytes_max: int | None
    server_waiting_max: int | None
    server_cpu_pct: float  # the server process's CPU time over the run, % of one core
    missing: int
    duplicates: int
    gaps_reported: int
    stream_resets: int
    errors: int
    last_error: str | None
    #: (seconds since the reset, latency from the trigger in ms) of every delivery, for the
    #: figures; results.json leaves them out (it would hold thousands of points).
    latency_points: tuple[tuple[float, float], ...] = field(default=(), repr=False,
                                                            metadata=NOT_IN_JSON)

    @property
    def lost(self) -> int:
        """Events missing, duplicated or reported gone (410): non-zero means a lane failed."""
        return self.missing + self.duplicates + self.gaps_reported

    def derived(self) -> dict[str, Any]:
        return {"lost": self.lost}


@dataclass(frozen=True)
class ComparisonResult(Record):
    """Everything a comparison measured since its last reset."""

    scenario: Scenario
    lanes: tuple[LaneResult, ...]
    seconds: float  # from the reset until triggering stopped
    settle_seconds: float  # how long run() then waited for the last deliveries
    total_seconds: float  # from the reset until the stop (or now)
    triggered: int
    publish_skew_ms: PublishSkew
    kernel_cpu_pct: float  # the load generator (this process and its swarm's) over total_seconds
    timeline: tuple[TimelinePoint, ...]
    command: tuple[str, ...] = field(default=(), metadata=NOT_IN_JSON)  # the CLI's, if any

    @property
    def kernel_cpu_peak_pct(self) -> float:
        """The load generator's highest CPU % over any sampling window (nan before a sample)."""
        return max((p.kernel_cpu_pct for p in self.timeline), default=NAN)

    @property
    def lost(self) -> dict[str, int]:
        """The lanes that lost or duplicated events, and how many."""
        return {row.lane: row.lost for row in self.lanes if row.lost}

    def lane(self, name: str) -> LaneResult:
        """The row of lane `name`; KeyError if it did not run."""
        for row in self.lanes:
            if row.lane == name:
                return row
        raise KeyError(f"no lane {name!r} in this result; it has {[r.lane for r in self.lanes]}")

    def derived(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kernel_cpu_peak_pct": self.kernel_cpu_peak_pct,
                               "lost": self.lost}
        if self.command:
            out["command"] = list(self.command)
        return out

    def __getitem__(self, key: str) -> Any:
        """`results["lanes"]`: the JSON form of one key, as results.json holds it (None for nan)."""
        return self.to_json()[key]
