"""Predict answers kept for callers that send an `Idempotency-Key`, so a retried call never runs the model twice.

Only a caller's own key is honoured (no key: nothing is kept). An answer is stored under (deployment, caller, key)
with a hash of the request's inputs: the same key with other inputs is refused (`IdempotencyKeyReused`, a 422),
never answered with the first call's outputs. A retry that arrives while the first call still runs waits for its
answer instead of running the model again; if the first call fails, the retry runs it. Answers are bounded in
bytes (least recently used go first) and expire after `ttl_s`; one answer larger than the whole bound is not kept.
Per process: with several deployer replicas, a retry routed to another one runs the model again.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cachetools import TTLCache

from hubpulse_common.errors import DomainError

Key = tuple[str, str, str]
# bookkeeping per kept answer besides its body (key strings, digest, cache links), so tiny answers count too
_ENTRY_OVERHEAD = 256


class IdempotencyKeyReused(DomainError):
    """The Idempotency-Key was used before with other inputs."""

    def __init__(self) -> None:
        super().__init__("this Idempotency-Key was used with other inputs; send a new key")


@dataclass(frozen=True)
class _Answer:
    digest: bytes
    body: bytes


def digest_of(payload: bytes) -> bytes:
    return hashlib.sha256(payload).digest()


class IdempotencyCache:
    def __init__(self, max_bytes: int, ttl_s: float) -> None:
        self.max_bytes = max_bytes
        self._answers: TTLCache[Key, _Answer] = TTLCache(
            maxsize=max_bytes, ttl=ttl_s, getsizeof=lambda answer: len(answer.body) + _ENTRY_OVERHEAD
        )
        self._running: dict[Key, tuple[bytes, asyncio.Future[bytes | None]]] = {}

    @property
    def bytes_used(self) -> int:
        return int(self._answers.currsize)

    async def answer(self, key: Key, digest: bytes, run: Callable[[], Awaitable[bytes]]) -> tuple[bytes, bool]:
        """(body, replayed): the kept answer for `key`, or `run()`'s, kept. `IdempotencyKeyReused` for other inputs."""
        while True:
            kept = self._answers.get(key)
            if kept is not None:
                if kept.digest != digest:
                    raise IdempotencyKeyReused
                return kept.body, True
            running = self._running.get(key)
            if running is None:
                break
            if running[0] != digest:
                raise IdempotencyKeyReused
            # the first call with this key is still running: its answer, or (if it failed) run it here
            body = await asyncio.shield(running[1])
            if body is not None:
                return body, True
        done: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._running[key] = (digest, done)
        try:
            body = await run()
        except BaseException:
            done.set_result(None)
            raise
        finally:
            del self._running[key]
        done.set_result(body)
        if len(body) + _ENTRY_OVERHEAD <= self.max_bytes:
            self._answers[key] = _Answer(digest, body)
        return body, False
