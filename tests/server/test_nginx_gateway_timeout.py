"""Through a real nginx whose `proxy_read_timeout` (1 s) is shorter than the hold the client
asks (3 s), every quiet hold ends in nginx's 504 (issue 15): the kit's client counts those as
empty polls, not errors, re-polls at once, and loses or duplicates nothing.

nginx is the system's (`apt-get install nginx`; CI installs it), started with a config of its
own in a temporary directory (`helpers.nginx`) and stopped by its master's PID.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from service_check import skip_or_fail_in_ci

from helpers import LongPollClient, Server
from helpers.faults import Publisher
from helpers.nginx import INSTALL_HINT, Nginx, find_nginx, launch_nginx_proxy

READ_TIMEOUT_S = 1  # nginx's proxy_read_timeout
HOLD_S = 3  # what the client asks: longer than nginx waits
QUIET_S = 6.5  # about six of nginx's 504s in a row
TOTAL = 50  # events over the test: 20, then one after the quiet spell, then the rest


@pytest.fixture
def nginx_binary() -> str:
    binary = find_nginx()
    if binary is None:
        skip_or_fail_in_ci(f"nginx is not installed; {INSTALL_HINT}")
    return binary


@pytest.fixture
def upstream_and_nginx(nginx_binary: str, launched: Callable[..., Server]
                       ) -> Iterator[tuple[Server, Nginx]]:
    server = launched("asyncio", hold=HOLD_S)
    with launch_nginx_proxy(server.url, read_timeout=READ_TIMEOUT_S) as nginx:
        yield server, nginx
    assert not nginx.running and not nginx.root.exists(), "nginx or its directory outlived it"


def nginx_504s(nginx: Nginx) -> int:
    """How many 504s nginx's access log records ("... HTTP/1.1" 504 ...)."""
    return (nginx.root / "access.log").read_text().count('" 504 ')


def test_504s_behind_nginx_are_empty_polls_and_nothing_is_lost(
        upstream_and_nginx: tuple[Server, Nginx], waiter: Callable[..., None]) -> None:
    server, nginx = upstream_and_nginx
    # A large backoff base makes the old behaviour unmistakable: six errors in a row would
    # wait up to 0.5 * 2**5 = 16 s (capped at 5 s) before the poll that gets the next event.
    with LongPollClient(nginx.url, hold=HOLD_S, backoff_base=0.5, backoff_cap=5.0) as client:
        with Publisher(server, rate=50, total=20) as first:
            assert first.done.wait(5)
        waiter(lambda: client.last_event_id == 20, 5, "the first 20 events")
        quiet = client.metrics.summary()["gateway_timeouts"]
        waiter(lambda: nginx_504s(nginx) >= 6, QUIET_S + 2, "six of nginx's 504s")
        after = server.trigger("after the quiet spell")
        waiter(lambda: client.last_event_id == after["id"], 5, "the event after the quiet spell")
        with Publisher(server, rate=50, total=TOTAL) as rest:
            assert rest.done.wait(5)
        waiter(lambda: client.last_event_id == TOTAL, 5, "every event")
        summary = client.metrics.summary()
        latency_ms = {d.event_id: d.latency_s * 1000 for d in client.metrics.deliveries}
    assert summary["errors"] == 0, summary["last_error"]
    assert summary["gateway_timeouts"] - quiet >= 6, summary
    assert summary["gateway_timeouts"] <= nginx_504s(nginx), "each one was a real 504 of nginx"
    ids = [d.event_id for d in client.metrics.deliveries]
    assert ids == list(range(1, TOTAL + 1)), ids  # nothing lost, nothing twice, in order
    assert (summary["missing"], summary["duplicates"]) == (0, 0), summary
    assert latency_ms[after["id"]] < 500, latency_ms[after["id"]]
