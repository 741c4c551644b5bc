"""Waiting for a condition in tests: one poller, with the last value seen in the failure."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_for(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    timeout_s: float = 60,
    *,
    interval_s: float = 0.25,
    what: str = "condition",
) -> T:
    """Poll until `done(probe())`, and return that value; fail naming `what` with the last value seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = await probe()
        if done(value):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what} not met within {timeout_s}s; last value: {value!r}"[:3000])
        await asyncio.sleep(interval_s)


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 60, interval_s: float = 0.1) -> None:
    """Poll until `check()` is true."""
    await wait_for(check, bool, timeout_s, interval_s=interval_s)
