"""Asyncio long polling with the check-then-wait race. WRONG ON PURPOSE, for one lesson.

This is `servers.fastapi_server` with one change. When `/poll_for_updates` finds nothing new, it
first awaits something and only then takes the future that the next publish will resolve. The
await stands for what real handlers do at that spot: the article's handler acquires an
`asyncio.Lock` before it adds itself to the pending list, others read a store asynchronously.
Any await hands the event loop to other requests, and a `/trigger_event` that runs during it
wakes the waiters registered *so far*, which do not include this one yet. This poll then
registers and waits for a publish that has already happened, so the event reaches it only when
its hold runs out. `--race-window` sets how long that await lasts, to make the gap easy to hit.

The fix is in `servers.fastapi_server`: no await between "nothing new" and "start waiting" (or
check again after registering). Everything else, the API included, is the same.

    python -m servers.racy_server --port 0 [--hold 30] [--race-window 0.005]
"""

from __future__ import annotations

import argparse
import asyncio

from servers import fastapi_server

NAME = "racy_server"
DEFAULT_RACE_WINDOW_S = 0.005  # about one async lock handoff or store read on a busy loop


def pause(seconds: float) -> fastapi_server.BeforeWait:
    """The await between the check and the registration: where a publish gets lost."""

    async def stand_in_for_a_lock_or_a_read() -> None:
        await asyncio.sleep(seconds)

    return stand_in_for_a_lock_or_a_read


def main(argv: list[str] | None = None) -> None:
    own = argparse.ArgumentParser(prog=f"python -m servers.{NAME}", add_help=False)
    own.add_argument("--race-window", type=float, default=DEFAULT_RACE_WINDOW_S, metavar="S",
                     help="how long a poll awaits between its check and its registration")
    args, rest = own.parse_known_args(argv)
    if not 0 <= args.race_window <= 60:
        own.error(f"--race-window must be from 0 to 60 seconds, not {args.race_window}")
    fastapi_server.main(rest, name=NAME, before_wait=pause(args.race_window))


if __name__ == "__main__":
    main()
