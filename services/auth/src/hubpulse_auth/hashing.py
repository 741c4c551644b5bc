"""Password hashing and verification under a memory budget.

Each argon2id run holds `HASH_MEMORY_KIB` for its duration; on the default thread pool, a dozen concurrent
signups took the service past the pod's memory limit (security audit H5; docs/decisions/auth.md). At most
`budget // 64 MiB` run at once; a request waits up to `wait_s` for a slot, then gets 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from hubpulse_auth.errors import HashingBusy
from hubpulse_auth.service import HASH_MEMORY_KIB

T = TypeVar("T")


class HashingGate:
    def __init__(self, memory_budget_mib: int, wait_s: float, retry_after_s: int = 1) -> None:
        self.slots = max(1, memory_budget_mib * 1024 // HASH_MEMORY_KIB)
        self._semaphore = asyncio.Semaphore(self.slots)
        self._wait_s = wait_s
        self._retry_after_s = retry_after_s

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        try:
            async with asyncio.timeout(self._wait_s):
                await self._semaphore.acquire()
        except TimeoutError:
            raise HashingBusy(
                f"too many sign-ins at once; retry in {self._retry_after_s} s", self._retry_after_s
            ) from None
        try:
            return await asyncio.to_thread(fn, *args)
        finally:
            self._semaphore.release()
