"""Typed records of notebook 08's measurements: one dataclass per table the notebook prints."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Tally:
    """What a crowd of clients received of the messages that were published.

    Counted by message text ("event 7"), not by id: on servers that keep their own logs two
    different events can share an id, so ids cannot say what was lost.
    """

    clients: int
    published: int  # messages confirmed by a server
    lost: int  # (client, message) pairs never received
    duplicates: int  # deliveries of a message the client had already received
    complete: int  # clients that received every message exactly once
    stream_resets: int  # times a client's cursor jumped to another server's sequence
    requests: int  # polls sent by all the clients together
    errors: int  # failed polls the clients retried
    gateway_ended: int  # held polls the gateway ended with 502/504, re-asked at once (no error)
    by_server: dict[str, int] = field(default_factory=dict)  # publishes per X-Served-By pid

    @property
    def lost_pct(self) -> float:
        """Lost deliveries as a percentage of clients x published messages."""
        expected = self.clients * self.published
        return 100 * self.lost / expected if expected else 0.0


@dataclass(frozen=True)
class Latency:
    """How fast the published events reached every client (all times in ms).

    `fanout` is, per event, the last client's receive time minus the event's own timestamp;
    `p50`/`p95` are over every single delivery.
    """

    servers: int
    clients: int
    events: int
    fanout_ms_median: float
    fanout_ms_max: float
    p50_ms: float
    p95_ms: float
    tally: Tally


@dataclass(frozen=True)
class PubSubCut:
    """Events published while Redis cut the servers' subscriptions, in one broker mode."""

    mode: str  # "relay" (pub/sub alone) or "log" (the stored log)
    cut_subscriptions: int  # what CLIENT KILL TYPE pubsub reported
    published_during_cut: int
    tally: Tally


@dataclass(frozen=True)
class KilledServer:
    """A server killed while it held polls, and what its clients made of it."""

    held_on_killed: int  # polls the killed server held when it died
    out_of_rotation_s: float  # kill until the gateway stopped sending it requests
    published_after: int
    recovered_s: float  # kill until every client had every event
    resent_by_gateway: int  # requests the gateway sent again to another server meanwhile
    tally: Tally


@dataclass(frozen=True)
class RedisRestart:
    """Redis restarted under one persistence setting: what the servers still had afterwards."""

    appendonly: bool
    crashed: bool  # killed with SIGKILL (True) or stopped cleanly with SIGTERM (False)
    published_before: int
    survived: int  # of those, events still in the log after the restart
    stream_before: str
    stream_after: str
    first_id_after: int  # the id the first publish after the restart got
    down_s: float  # restart until a publish succeeded again
    client_stream_resets: int  # a held client noticed the log was new


@dataclass(frozen=True)
class GatewayGuards:
    """The gateway's token and rate limit, as a client meets them."""

    without_token: int  # status of a publish without the token
    with_token: int  # status of the same publish with it
    read_without_token: int  # reading never needs the token
    burst: int  # requests sent as fast as possible
    limited: int  # of those, answered 429
    retry_after_s: float  # the Retry-After of the first 429
    client_429s: int  # 429s a kit client met while polling
    client_min_wait_s: float  # the shortest pause the client made after a 429
    client_events: int  # events that client still received


@dataclass(frozen=True)
class ScalingRow:
    """n servers holding polls on one broker, and one publish fanned out to all of them."""

    servers: int
    polls_per_server: int
    held: int  # polls the servers reported waiting before the publish
    fanout_ms_median: float  # last client minus event timestamp, median over the publishes
    p50_ms: float
    server_cpu_s: float  # CPU the servers used during the fan-out, all together
    missing: int
