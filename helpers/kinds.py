"""The one catalogue of server kinds: what `launch(kind)` accepts, and what each kind is.

    from helpers.kinds import KINDS, find_kind

    find_kind("naive").sleeps            # True: a held poll naps and checks
    find_kind("asyncio").module          # "servers.fastapi_server"

Several names may start the same module ("short", "naive" and "flask" all start the Flask
server): the name says which lesson it is launched for. Panels, lanes, the scaling helpers and
the benchmark read a kind's facts here instead of comparing strings of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: How a client asks: again and again ("short"), or one request held until there is news
#: ("long"); or it opens one stream that carries every event ("sse", "ws": the asyncio server).
Strategy = Literal["short", "long", "sse", "ws"]
#: How a held poll hears of a new event: it naps and checks ("sleeps", the naive sleep loop), a
#: publish wakes it ("woken", asyncio), or it is not a server of events at all ("forwards").
Waiting = Literal["sleeps", "woken", "forwards"]

#: Titles of the two strategies, as panels and tables show them.
STRATEGY_TITLES: dict[Strategy, str] = {"short": "Short polling", "long": "Long polling",
                                        "sse": "Server-Sent Events", "ws": "WebSocket"}


@dataclass(frozen=True)
class Kind:
    """One name `launch()` accepts, and the facts every part of the kit reads about it."""

    name: str  # what launch(name) accepts
    module: str  # the module it runs as `python -m <module>`
    strategy: Strategy | None  # the strategy it is launched for; None for the proxy
    waiting: Waiting
    title: str  # a short human description, for tables and panel headings
    #: Start-up options beyond the ones every server has (hold, retention, store, token, ...).
    options: tuple[str, ...] = ()

    @property
    def sleeps(self) -> bool:
        """True for the naive sleep loop, whose `check_interval` sets its latency."""
        return self.waiting == "sleeps"

    @property
    def family(self) -> str:
        """The server implementation, as plots colour it: "flask", "asyncio" or "proxy"."""
        return {"sleeps": "flask", "woken": "asyncio", "forwards": "proxy"}[self.waiting]

    def takes(self, option: str) -> bool:
        """Whether `option` (e.g. "check_interval", "threaded") is one of this kind's own."""
        return option in self.options


_FLASK = "servers.flask_server"
_FASTAPI = "servers.fastapi_server"
_FLASK_OPTIONS = ("check_interval", "threaded")
#: launch("asyncio", broker=redis.url): the log in Redis, shared by servers (docs/broker.md)
_FASTAPI_OPTIONS = ("lean", "broker", "broker_key", "broker_mode")

#: Every kind, by name, in the order `launch()`'s error message lists them.
KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("short", _FLASK, "short", "sleeps", "short polling (Flask /events)", _FLASK_OPTIONS),
    Kind("naive", _FLASK, "long", "sleeps", "naive long poll (Flask sleep loop)",
         _FLASK_OPTIONS),
    Kind("flask", _FLASK, "long", "sleeps", "the Flask server", _FLASK_OPTIONS),
    Kind("asyncio", _FASTAPI, "long", "woken", "asyncio long poll (FastAPI)", _FASTAPI_OPTIONS),
    Kind("fastapi", _FASTAPI, "long", "woken", "the FastAPI server", _FASTAPI_OPTIONS),
    Kind("racy", "servers.racy_server", "long", "woken",
         "asyncio long poll with the check-then-wait race", ("race_window",)),
    # launch("proxy", upstream=server.url, read_timeout=S): the bundled reverse proxy
    Kind("proxy", "servers.proxy", None, "forwards", "the bundled reverse proxy",
         ("upstream", "read_timeout")),
)}


def find_kind(name: str) -> Kind:
    """The kind called `name`. Raises ValueError listing the kinds there are."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"Unknown server kind {name!r}; choose one of "
                         f"{', '.join(KINDS)}.") from None


def kind_of_module(module: str) -> Kind | None:
    """The first kind that runs `module` ("servers.flask_server" -> "short"), or None."""
    return next((kind for kind in KINDS.values() if kind.module == module), None)
