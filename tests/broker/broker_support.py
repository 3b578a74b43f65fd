"""What the broker tests share beyond fixtures: the rule for a machine without redis-server."""

from __future__ import annotations

import os

import pytest

from helpers.redis_server import INSTALL_HINT, redis_available


def need_redis() -> None:
    """Skip (saying how to install it) when redis-server is missing; in CI, fail instead."""
    if redis_available():
        return
    message = f"redis-server is not installed; {INSTALL_HINT}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must install it: .ci/run does)")
    pytest.skip(message)
