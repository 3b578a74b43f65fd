"""One rule for a test that needs a real service the machine may lack (Redis, nginx, Nchan,
Chromium): on a learner's laptop it skips, saying what to install; under CI (env `CI` set) it
fails, since `.ci/run` installs every one of them and a skip there would hide a broken setup."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

from helpers.redis_server import INSTALL_HINT, redis_available


def skip_or_fail_in_ci(message: str) -> NoReturn:
    """Skip with `message` (what is missing, and how to install it); fail with it under CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI must install it: .ci/run does)")
    pytest.skip(message)


def need_redis() -> None:
    """Skip (saying how to install it) when redis-server is missing; under CI, fail instead."""
    if not redis_available():
        skip_or_fail_in_ci(f"redis-server is not installed; {INSTALL_HINT}")
