"""Polling helpers for things that happen in the background (broadcasts, reconnects)."""

from __future__ import annotations

import time
from collections.abc import Callable

from veneer._async._concurrency import sleep


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> float:
    """Wait until ``condition()`` holds; return how long it took. Fails after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await sleep(0.002)
    return time.monotonic() - started
