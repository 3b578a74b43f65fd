"""`FaultPanel`: the faults behind buttons, on the kit's `PanelBase`."""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from dataclasses import dataclass

import ipywidgets as widgets

from helpers.faults.actions import cut_connections, kill_clients, restart_server, stall_server
from helpers.launcher import Server
from helpers.panel import PanelBase
from helpers.swarm import Swarm


@dataclass(frozen=True)
class Action:
    """One thing a `FaultPanel` did: when (HH:MM:SS) and what."""

    at: str
    text: str


class FaultPanel(PanelBase):
    """Buttons that break things: restart, kill clients, cut at the proxy, stall the server.

    Each button calls the method of the same name, so code and clicks do the same thing:
    `restart()`, `kill_clients()`, `cut()`, `stall()`. Buttons whose target is missing (no
    swarm, no proxy) are disabled. `actions` lists what was done.
    """

    def __init__(self, server: Server, swarm: Swarm | None = None, proxy: Server | None = None,
                 kill_n: int = 10, stall_s: float = 2.0,
                 actions: list[Action] | None = None) -> None:
        super().__init__()
        self.server = server
        self.swarm = swarm
        self.proxy = proxy
        self.kill_n = kill_n
        self.stall_s = stall_s
        self.actions: list[Action] = [] if actions is None else actions

        def button(label: str, icon: str, action: Callable[[], object],
                   enabled: bool = True) -> widgets.Button:
            return self._button(label, icon, action, enabled=enabled,
                                layout=widgets.Layout(width="auto"))

        self.restart_button = button("Restart server", "refresh", self.restart)
        self.kill_button = button(f"Kill {self.kill_n} clients", "user-times",
                                  self.kill_clients, self.swarm is not None)
        self.cut_button = button("Cut at the proxy", "scissors", self.cut,
                                 self.proxy is not None)
        self.stall_button = button(f"Stall server {self.stall_s:g} s", "pause",
                                   lambda: self.stall(wait=False))
        self.refresh_button = button("Refresh", "eye", self.refresh)
        self._show(
            widgets.HTML(f"<b>Faults</b> on <code>{html.escape(self.server.url)}</code>"
                         + (f" behind the proxy <code>{html.escape(self.proxy.url)}</code>"
                            if self.proxy else "")),
            widgets.HBox([self.restart_button, self.kill_button, self.cut_button,
                          self.stall_button, self.refresh_button]),
            self.status,
        )
        self.refresh()

    def restart(self) -> float:
        """Restart the server gracefully; returns the seconds it was down."""
        down = restart_server(self.server)
        self._did(f"restarted the server ({down:.2f} s down)")
        return down

    def kill_clients(self, n: int | None = None) -> list[str]:
        """Kill `n` (default `kill_n`) random swarm clients; they come back with their cursor."""
        if self.swarm is None:
            raise RuntimeError("this panel has no swarm; pass FaultPanel(server, swarm=...)")
        killed = kill_clients(self.swarm, n or self.kill_n)
        self._did(f"killed and restarted {len(killed)} clients")
        return killed

    def cut(self) -> int:
        """Make the proxy drop every connection; returns how many it closed."""
        if self.proxy is None:
            raise RuntimeError("this panel has no proxy; pass FaultPanel(server, proxy=...)")
        cut = cut_connections(self.proxy)
        self._did(f"the proxy cut {cut} connections")
        return cut

    def stall(self, seconds: float | None = None, *, wait: bool = True) -> None:
        """Freeze the server for `seconds` (default `stall_s`)."""
        seconds = seconds or self.stall_s
        stall_server(self.server, seconds, wait=wait)
        self._did(f"stalled the server for {seconds:g} s")

    def refresh(self) -> None:
        """Show the swarm's counters and the last actions."""
        rows = [f"<li>{html.escape(a.at)} {html.escape(a.text)}</li>" for a in self.actions[-6:]]
        counters = ""
        if self.swarm is not None:
            m = self.swarm.metrics.summary()
            counters = (f"clients: {self.swarm.n}, events delivered: {m['events']:,}, "
                        f"errors (retried): {m['errors']:,}, duplicates: {m['duplicates']}, "
                        f"missing: {m['missing']}, gaps reported: {m['gaps_reported']}, "
                        f"stream resets: {m['stream_resets']}")
        self.status.value = f"<div>{counters}</div><ul>{''.join(rows)}</ul>"

    def _did(self, text: str) -> None:
        self.actions.append(Action(time.strftime("%H:%M:%S"), text))
        self.refresh()
