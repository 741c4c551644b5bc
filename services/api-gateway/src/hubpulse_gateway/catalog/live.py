"""The live picks feed: one poller per gateway process fans new picks out to WebSocket subscribers.

Why poll the catalog rather than consume hub.scores.v2: the catalog is what /v1/picks serves, so a pushed
pick is always one the client can then open (no race with the scorer's write); it needs no consumer group
per process (the gateway runs several workers and instances); and the poll is one indexed query a second
that runs only while someone is subscribed.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from hubpulse_common.logging import get_logger
from hubpulse_common.supervise import Supervised
from hubpulse_gateway.catalog import repository
from hubpulse_gateway.catalog.presentation import hype_score

log = get_logger(__name__)

POLL_LIMIT = 500


@dataclass(eq=False)
class Subscriber:
    threshold: float
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(maxsize=1000))


def pick_body(row: asyncpg.Record) -> dict[str, Any]:
    body = dict(row)
    body["hype_score"] = hype_score(body["probability"], body["likes"], body.pop("likes_7d"))
    return body


class PicksFeed:
    def __init__(self, pool: asyncpg.Pool, poll_s: float, lookback_s: float) -> None:
        self._pool = pool
        self._poll_s = poll_s
        # Rows stamped just before our last look can commit just after it: re-read a short window, dedupe.
        self._lookback = timedelta(seconds=lookback_s)
        self._subscribers: set[Subscriber] = set()
        # runs while someone is subscribed (started again by the next subscriber); restarted should it raise
        self._poller = Supervised("live-picks", self._run)

    def subscribe(self, threshold: float) -> Subscriber:
        sub = Subscriber(threshold)
        self._subscribers.add(sub)
        self._poller.start()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    async def close(self) -> None:
        await self._poller.stop()

    async def _run(self) -> None:
        # Only what changes from now on is new; the look back below must not replay older rows.
        start = since = await repository.latest_update(self._pool) or datetime.now(UTC)
        seen: dict[tuple[str, datetime], datetime] = {}
        while self._subscribers:
            await asyncio.sleep(self._poll_s)
            floor = min((s.threshold for s in self._subscribers), default=1.0)
            try:
                rows = await repository.picks_changed_since(self._pool, since - self._lookback, floor, POLL_LIMIT)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("live_picks.poll_failed", error=str(exc))
                continue
            for row in rows:
                key = (row["model_id"], row["updated_at"])
                if key in seen or row["updated_at"] <= start:
                    continue
                seen[key] = row["updated_at"]
                self._fan_out(pick_body(row))
            if rows:
                since = max(since, rows[-1]["updated_at"])
            horizon = since - self._lookback
            seen = {k: t for k, t in seen.items() if t > horizon}

    def _fan_out(self, pick: dict[str, Any]) -> None:
        for sub in list(self._subscribers):
            if pick["probability"] >= sub.threshold:
                # A client too slow to keep up misses pushes rather than holding memory for it.
                with contextlib.suppress(asyncio.QueueFull):
                    sub.queue.put_nowait(pick)
