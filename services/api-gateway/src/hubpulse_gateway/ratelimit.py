"""Rate-limit counters shared by every replica: the `limits` library's storage interface on MongoDB.

`limits` ships an async MongoDB storage, but on motor (deprecated), and its sliding-window-counter update
subtracts dates from `$$NOW`, which SecantusDB (the tests' MongoDB) cannot evaluate. This storage implements
the library's interface on PyMongo's async API instead. The sliding window counter of a key is one document
holding the current window's number and the counts of that window and the one before; a check is one
`find_one_and_update` whose update pipeline rolls the windows forward, weighs the previous count as the
library's strategy does and adds the hit only if the limit allows it: one round trip, atomic, so concurrent
replicas never overshoot and nothing is given back. A TTL index removes a document two windows after its last
window. See docs/decisions/rate-limits.md.

`FailoverLimiter` decides what happens when MongoDB is unreachable: it fails open to this process's own
counters (a limit still applies, per replica) and tries MongoDB again after a pause.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from math import floor
from typing import Any, TypeVar

from cachetools import TTLCache
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, SlidingWindowCounterSupport, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from prometheus_client import Counter
from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from hubpulse_common.errors import DomainError

log = logging.getLogger(__name__)

STORE_FAILURES = Counter(
    "hubpulse_rate_limit_store_failures_total",
    "Rate-limit checks that found the shared store unreachable and fell back to this process's counters",
)

Document = dict[str, Any]


class MongoStorage(Storage, SlidingWindowCounterSupport):
    """`limits` async storage (fixed and sliding window counter strategies) in one MongoDB collection: fixed
    windows as `{_id: key, count, expireAt}`, sliding windows as described above."""

    STORAGE_SCHEME = None  # built from a collection, not from a URI

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        super().__init__(wrap_exceptions=True)
        self.collection = collection
        self._indexed = False
        # A refused check's (window, previous, current) counts, which the caller reads next for Retry-After
        # (`get_sliding_window`): the refusal's own answer instead of a second round trip. Kept one second.
        self._refused: TTLCache[str, tuple[int, int, int]] = TTLCache(maxsize=10_000, ttl=1.0)

    @property
    def base_exceptions(self) -> type[Exception]:
        return PyMongoError

    async def _ensure_index(self) -> None:
        if not self._indexed:
            await self.collection.create_index("expireAt", expireAfterSeconds=0)
            self._indexed = True

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add `amount`; a counter whose expiry has passed (the TTL monitor runs once a minute) starts again."""
        await self._ensure_index()
        now = datetime.now(UTC)
        expired = {"$not": [{"$gt": ["$expireAt", now]}]}
        document = await self.collection.find_one_and_update(
            {"_id": key},
            [
                {
                    "$set": {
                        "count": {"$cond": [expired, amount, {"$add": ["$count", amount]}]},
                        "expireAt": {"$cond": [expired, now + timedelta(seconds=expiry), "$expireAt"]},
                    }
                }
            ],
            upsert=True,
            projection=["count"],
            return_document=ReturnDocument.AFTER,
        )
        assert document is not None  # upserted
        return int(document["count"])

    async def get(self, key: str) -> int:
        document = await self.collection.find_one({"_id": key, "expireAt": {"$gt": datetime.now(UTC)}})
        return int(document["count"]) if document else 0

    async def get_expiry(self, key: str) -> float:
        document = await self.collection.find_one({"_id": key})
        expire_at: datetime | None = document["expireAt"] if document else None
        return expire_at.replace(tzinfo=UTC).timestamp() if expire_at else time.time()

    async def check(self) -> bool:
        try:
            await self.collection.database.command("ping")
        except PyMongoError:
            return False
        return True

    async def reset(self) -> int | None:
        return (await self.collection.delete_many({})).deleted_count

    async def clear(self, key: str) -> None:
        await self.collection.delete_one({"_id": key})

    # The sliding window counter, one document per key: {_id, w: window number, c: its count, p: the previous
    # window's count, expireAt}. Weighing follows limits' SlidingWindowCounterRateLimiter: the previous count
    # times the share of the previous window still inside the sliding window, plus the current count.

    async def acquire_sliding_window_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        await self._ensure_index()
        now = time.time()
        window = floor(now / expiry)
        same, follows = {"$eq": ["$w", window]}, {"$eq": ["$w", window - 1]}
        weighted = {"$floor": {"$add": [{"$multiply": ["$p", _previous_weight(now, expiry)]}, "$c"]}}
        document = await self.collection.find_one_and_update(
            {"_id": _window_id(key)},
            [
                # roll forward: a document of an older window (or a new one) starts from zero
                {
                    "$set": {
                        "p": {"$cond": [same, "$p", {"$cond": [follows, "$c", 0]}]},
                        "c": {"$cond": [same, "$c", 0]},
                    }
                },
                {"$set": {"ok": {"$lte": [{"$add": [weighted, amount]}, limit]}}},
                {
                    "$set": {
                        "c": {"$cond": ["$ok", {"$add": ["$c", amount]}, "$c"]},
                        "w": window,
                        "expireAt": datetime.fromtimestamp((window + 2) * expiry, UTC),
                    }
                },
            ],
            upsert=True,
            projection={"ok": True, "p": True, "c": True, "_id": False},
            return_document=ReturnDocument.AFTER,
        )
        assert document is not None  # upserted
        if not document["ok"]:
            self._refused[key] = (window, int(document["p"]), int(document["c"]))
        return bool(document["ok"])

    async def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        """(previous count, its remaining weight in seconds, current count, seconds until the current ends)."""
        now = time.time()
        window = floor(now / expiry)
        refused = self._refused.pop(key, None)
        if refused is not None and refused[0] == window:
            previous, current = refused[1], refused[2]
        else:
            document = await self.collection.find_one({"_id": _window_id(key)}) or {}
            stored = document.get("w")
            if stored == window:
                previous, current = int(document["p"]), int(document["c"])
            elif stored == window - 1:
                previous, current = int(document["c"]), 0
            else:
                previous, current = 0, 0
        previous_ttl = _previous_weight(now, expiry) * expiry if previous else 0.0
        current_ttl = (1 - ((now / expiry) % 1)) * expiry + expiry
        return previous, previous_ttl, current, current_ttl

    async def clear_sliding_window(self, key: str, expiry: int) -> None:
        await self.collection.delete_one({"_id": _window_id(key)})


def _window_id(key: str) -> str:
    """The sliding window's document, apart from the fixed-window counter (`incr`) of the same key."""
    return f"{key}/sliding"


R = TypeVar("R")


def _previous_weight(now: float, expiry: int) -> float:
    """The share of the previous window still inside the sliding window that ends now."""
    return 1 - ((now / expiry) % 1)


class FailoverLimiter:
    """The sliding window counter on the shared store, or on this process's counters while the store is
    unreachable (fail open to per-process limits, retried after `retry_s`)."""

    def __init__(self, shared: Storage | None = None, retry_s: float = 10.0) -> None:
        self.local = SlidingWindowCounterRateLimiter(MemoryStorage())
        self.shared = None if shared is None else SlidingWindowCounterRateLimiter(shared)
        self.retry_s = retry_s
        self._shared_down_until = 0.0
        self.fallbacks = 0  # checks the shared store failed

    def _limiter(self) -> SlidingWindowCounterRateLimiter:
        if self.shared is not None and time.monotonic() >= self._shared_down_until:
            return self.shared
        return self.local

    def _fall_back(self, exc: StorageError) -> SlidingWindowCounterRateLimiter:
        STORE_FAILURES.inc()
        self.fallbacks += 1
        if time.monotonic() >= self._shared_down_until:
            log.warning("rate-limit store unreachable, counting in this process for %.0f s: %s", self.retry_s, exc)
        self._shared_down_until = time.monotonic() + self.retry_s
        return self.local

    async def _either(self, use: Callable[[SlidingWindowCounterRateLimiter], Awaitable[R]]) -> R:
        try:
            return await use(self._limiter())
        except StorageError as exc:
            return await use(self._fall_back(exc))

    async def hit(self, item: RateLimitItem, key: str) -> bool:
        """Counts one attempt; False when it is over the limit."""
        return await self._either(lambda limiter: limiter.hit(item, key))

    async def test(self, item: RateLimitItem, key: str) -> bool:
        """Whether one more attempt would be within the limit, counting nothing."""
        return await self._either(lambda limiter: limiter.test(item, key))

    async def reset_at(self, item: RateLimitItem, key: str) -> float:
        """When the caller may try again (epoch seconds)."""
        stats = await self._either(lambda limiter: limiter.get_window_stats(item, key))
        return stats.reset_time

    async def retry_after(self, item: RateLimitItem, key: str) -> int:
        """Whole seconds until the caller may try again (at least 1), for Retry-After."""
        return max(1, int(await self.reset_at(item, key) - time.time()) + 1)


class TooManyFailedLogins(DomainError):
    """An account used up its failed logins (counted across every replica)."""


class AccountLogins:
    """Failed logins per account, counted by the gateway on the shared store so that N replicas of the gateway
    and the auth service still allow one budget per account (the auth service keeps its own count too). Only
    wrong passwords count: the owner logging in correctly never locks their own account."""

    def __init__(self, limiter: FailoverLimiter, limit: str) -> None:
        self.limiter = limiter
        self.limit = parse(limit)

    @staticmethod
    def _key(email: str) -> str:
        return f"login-account:{email.strip().lower()}"

    async def refuse_locked(self, email: str) -> None:
        key = self._key(email)
        if not await self.limiter.test(self.limit, key):
            retry_after = await self.limiter.retry_after(self.limit, key)
            raise TooManyFailedLogins(
                f"too many failed login attempts for this account; retry in {retry_after} s", retry_after
            )

    async def count_failure(self, email: str) -> None:
        await self.limiter.hit(self.limit, self._key(email))


def shared_limiter(
    url: str, database: str, *, timeout_s: float, retry_s: float, collection: str = "rate_limits"
) -> tuple[FailoverLimiter, AsyncMongoClient[Document]]:
    """A limiter on MongoDB (`url`, `database`.`collection`) through a client of its own whose every wait is
    bounded by `timeout_s` (a check must not hang on an unreachable store); the caller closes the client."""
    timeout_ms = max(1, int(timeout_s * 1000))
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        url,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=timeout_ms,
        tz_aware=True,
    )
    return FailoverLimiter(MongoStorage(client[database][collection]), retry_s=retry_s), client
