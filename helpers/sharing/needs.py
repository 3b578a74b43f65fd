"""Whether notebook 08's Redis cells can run here: install hints for a learner, a failure in CI.

    with_redis = redis_ready()      # prints how to install redis-server when it is missing
"""

from __future__ import annotations

import os

from helpers.redis_server import RedisMissing, redis_available

INSTALL = ("redis-server is not installed, so this cell skips what needs it. Install it, restart\n"
           "the kernel, and run the notebook again:\n"
           "  Debian or Ubuntu:  sudo apt-get install redis-server\n"
           "  macOS (Homebrew):  brew install redis")


def redis_ready() -> bool:
    """True when `redis-server` can be started; otherwise print how to install it (each cell
    that asks says so, so that no cell is skipped silently).

    Under CI (env `CI` set) a missing Redis raises `RedisMissing` instead: CI installs it, so
    a skip there would hide a broken setup.
    """
    if redis_available():
        return True
    if os.environ.get("CI"):
        raise RedisMissing("CI must run notebook 08's Redis cells, but redis-server is not "
                           "installed: apt-get install redis-server (brew install redis).")
    print(INSTALL)
    return False
