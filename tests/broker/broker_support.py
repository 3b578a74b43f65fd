"""What the broker tests share beyond fixtures: the rule for a machine without redis-server."""

from __future__ import annotations

from service_check import skip_or_fail_in_ci

from helpers.redis_server import INSTALL_HINT, redis_available


def need_redis() -> None:
    """Skip (saying how to install it) when redis-server is missing; in CI, fail instead."""
    if redis_available():
        return
    skip_or_fail_in_ci(f"redis-server is not installed; {INSTALL_HINT}")
