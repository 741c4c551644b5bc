"""Kafka side of the features service: the snapshot batch handler and the day closer (both thin)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import pandas as pd
from prometheus_client import Counter, Histogram

from hubpulse_common.events import (
    DayIngested,
    ModelFeatures,
    ModelFeaturesBatch,
    ModelFeaturesPacked,
    ModelSnapshotBatch,
)
from hubpulse_common.kafka import EventBus, Received
from hubpulse_common.logging import get_logger
from hubpulse_common.memory import release_free_memory
from hubpulse_common.renames import renames_in_messages
from hubpulse_features import repository, service

log = get_logger(__name__)

SignalsRead = Callable[[], Awaitable[bool]]

ROWS = Counter("hubpulse_features_rows_total", "Feature rows computed", ["kind"])
DAYS_CLOSED = Counter("hubpulse_features_days_closed_total", "Days whose cross-sectional features were finalised")
DAY_CLOSE_SECONDS = Histogram(
    "hubpulse_features_day_close_seconds",
    "Wall time to finalise one day",
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200),
)


class FeaturesWorker:
    """Owns the store and the bus; the handler and the closer never interleave (one lock)."""

    def __init__(
        self, pool: asyncpg.Pool, bus: EventBus, *, publish_v1: bool = False, publish_v2: bool = False
    ) -> None:
        self._pool = pool
        self._bus = bus
        self._publish_v1 = publish_v1
        # the columnar topics the close publishes: v3, and v2 where still asked for
        self._batches: tuple[type[ModelFeaturesPacked] | type[ModelFeaturesBatch], ...] = (
            (ModelFeaturesPacked, ModelFeaturesBatch) if publish_v2 else (ModelFeaturesPacked,)
        )
        self._lock = asyncio.Lock()
        self.day_activity = asyncio.Event()
        self.close_parts: dict[str, float] = {}

    async def handle(self, batch: Sequence[Received[ModelSnapshotBatch]]) -> None:
        messages = [r.event for r in batch]
        days = sorted({m.snapshot_date for m in messages})
        async with self._lock, self._pool.acquire() as conn, conn.transaction():
            await repository.share_days(conn, days)
            # a renamed model's history moves to its new name before its features are computed (issue 14)
            model_ids = [m for message in messages for m in message.model_id]
            aliases = await repository.follow_renames(conn, renames_in_messages(messages), model_ids)
            added: dict[dt.date, int] = {}
            reopened: set[dt.date] = set()
            streamed = 0
            for group in service.day_groups(messages):
                records = service.snapshot_records(group, aliases)
                added |= await repository.upsert_history(conn, records)
                # a renamed model's earlier row arriving after its new name's later days: those are computed again
                # (and reopened if they were closed: on a catch-up the consumer drains a partition at a time, and a
                # day closes once a later one shows up, so the late row often finds them closed)
                again = await repository.days_after(conn, service.filed_late(group, aliases))
                keys = service.with_keys(service.records_keys(records), again)
                first = min(m.snapshot_date for m in group)
                last = max([m.snapshot_date for m in group] + [day for _, day in again])
                window = await repository.load_window(
                    conn, keys["model_id"].unique().tolist(), service.window_start(first), last
                )
                # pandas work off the event loop: /healthz, /metrics and the consumers' heartbeats keep answering
                features = await asyncio.to_thread(service.batch_features, window, keys)
                again_days = {day for _, day in again}
                reopened |= again_days
                days_written = {m.snapshot_date for m in group} | again_days
                await repository.append_features(conn, features, sorted(days_written))
                streamed += len(features)
            await repository.touch_days(conn, sorted(reopened.union(days)), added)
        # Nothing is emitted yet: a model-day is published once, final, when its day closes. Emitting the
        # provisional rows too would make the scorer score (and write) every model-day twice.
        ROWS.labels("streamed").inc(streamed)
        self.day_activity.set()

    async def handle_ingested(self, batch: Sequence[Received[DayIngested]]) -> None:
        """The ingestor's word that a day is complete: its count is kept, and the closer looks at once (the day
        closes when it has streamed that many model-days; a closed day stays closed)."""
        for received in batch:
            await repository.record_signal(self._pool, received.event)
            log.info(
                "features.day_ingested",
                day=received.event.snapshot_date.isoformat(),
                models=received.event.models,
                source=received.event.source,
            )
        self.day_activity.set()

    async def close_day(self, day: dt.date) -> int:
        """Finalise a day: cross-sectional features over its whole population, published with the time features
        its batches stored.

        The ranks need the whole day at once, but only its numbers; the rows themselves are then read,
        finalised and published a slice at a time, so memory stays bounded at any Hub size.
        """
        async with self._lock, self._pool.acquire() as conn:
            if not await repository.claim_day(conn, day):
                return 0  # another replica is closing it, or just did
            try:
                models = await self._close_claimed(conn, day)
            except BaseException as failure:
                # A failure in a slice's task group cancels its sibling, possibly mid-query on this connection,
                # which then takes no unlock (asyncpg: "another operation is in progress", an error that hid
                # the real one). Ending the session drops its lock; the pool opens a fresh connection.
                pid = conn.get_server_pid()
                conn.terminate()
                if isinstance(failure, Exception):
                    # the server drops the lock when the session's backend has exited, a moment later: an
                    # immediate retry would otherwise find the day still claimed and stand aside (the close's
                    # own error is the one raised, whatever this wait meets)
                    with contextlib.suppress(Exception):
                        await repository.wait_session_ended(self._pool, pid)
                raise
            await repository.release_day(conn, day)
        # the day's frames are gone: their memory goes back to the system before the next day's batches
        await asyncio.to_thread(release_free_memory)
        return models

    async def _close_claimed(self, conn: asyncpg.Connection, day: dt.date) -> int:
        """The day is ranked and published, its partition of the stream indexed by model (it stays: the features'
        one write), and the day marked closed. A crash anywhere before the mark leaves the day open, and the next
        close recomputes and republishes the same rows (consumers upsert by model-day); after it, everything was
        published.

        The rows are read on a second connection, from the start: PostgreSQL joins them while the ranks are read
        and computed, instead of after. Both reads see the same day: its batches wait for the day's lock, which
        the close holds."""
        started = time.perf_counter()
        renamed_from = await repository.renamed_on(conn, day)
        async with self._pool.acquire() as reader:
            try:
                models = await self._rank_and_publish(conn, reader, day, renamed_from, started)
            except BaseException:
                # Possibly cancelled mid-COPY: ending the session ends the rows' read.
                reader.terminate()
                raise
        published = time.perf_counter()
        await repository.index_day(conn, day)
        indexed = time.perf_counter()
        await repository.finish_close(conn, day, models)
        self.close_parts |= {"index_s": indexed - published, "commit_s": time.perf_counter() - indexed}
        ROWS.labels("final").inc(models)
        DAYS_CLOSED.inc()
        seconds = time.perf_counter() - started
        DAY_CLOSE_SECONDS.observe(seconds)
        log.info(
            "features.day_closed",
            day=day.isoformat(),
            models=models,
            seconds=round(seconds, 2),
            **{k: round(v, 2) for k, v in self.close_parts.items()},
        )
        return models

    async def _rank_and_publish(
        self,
        ranker: asyncpg.Connection,
        reader: asyncpg.Connection,
        day: dt.date,
        renamed_from: dict[str, str],
        started: float,
    ) -> int:
        """Ranks the day (its rank inputs read on `ranker`) while its rows are read (one COPY on `reader`); then
        the slices are finalised and encoded (in a thread) while the slices before them are published: the stages
        overlap instead of taking turns. A failure in one cancels the others (a task group)."""
        slices: asyncio.Queue[pd.DataFrame | None] = asyncio.Queue(maxsize=1)
        encoded: asyncio.Queue[dict[str, list[tuple[bytes, bytes]]] | None] = asyncio.Queue(maxsize=1)
        models = 0
        # where the close's time goes (logged with the day): the ranks (from the close's start), waiting for the
        # read, finalising and encoding, and publishing (these overlap with the next slice's encoding)
        parts = self.close_parts = dict.fromkeys(("ranks_s", "read_wait_s", "encode_s", "publish_s"), 0.0)
        cross = pd.DataFrame()
        partitions = {event.topic: await self._bus.partition_count(event.topic) for event in self._batches}

        def encode(rows: pd.DataFrame) -> tuple[int, dict[str, list[tuple[bytes, bytes]]]]:
            """The slice's final rows as messages by topic: hub.features.v3, and v2 or v1 (one per row) where
            still asked for."""
            final = service.close_rows(rows, cross)
            messages = {
                event.topic: service.feature_batches(
                    final,
                    renamed_from=renamed_from,
                    day_models=len(cross),
                    partitions=partitions[event.topic],
                    event=event,
                )
                for event in self._batches
            }
            if self._publish_v1:
                messages[ModelFeatures.topic] = service.feature_payloads(
                    final, provisional=False, renamed_from=renamed_from, day_models=len(cross)
                )
            return len(final), messages

        async def read() -> None:
            await repository.stream_day_rows(reader, day, slices.put)
            await slices.put(None)

        async def finalise() -> None:
            nonlocal models, cross
            cross = await asyncio.to_thread(service.day_cross_features, await repository.load_rank_inputs(ranker, day))
            parts["ranks_s"] = time.perf_counter() - started
            while True:
                waited = time.perf_counter()
                if (rows := await slices.get()) is None:
                    break
                encoding = time.perf_counter()
                parts["read_wait_s"] += encoding - waited
                count, messages = await asyncio.to_thread(encode, rows)
                parts["encode_s"] += time.perf_counter() - encoding
                await encoded.put(messages)
                models += count
            await encoded.put(None)

        async def publish() -> None:
            while (messages := await encoded.get()) is not None:
                publishing = time.perf_counter()
                for topic, payloads in messages.items():
                    await self._bus.publish_encoded(topic, payloads)
                parts["publish_s"] += time.perf_counter() - publishing

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(read())
            tasks.create_task(finalise())
            tasks.create_task(publish())
        return models

    async def close_due_days(self, idle_s: float, signals_read: SignalsRead | None = None) -> list[dt.date]:
        """Closes the due days. signals_read: whether every day-complete signal sent so far has been read; a day due
        only because a later day started waits until then (its signal may only not have been read yet). Asked only
        when such a day is due: it is a few broker round trips."""
        due = await repository.days_to_close(self._pool, idle_s)
        if signals_read is not None and any(d.overtaken_only for d in due) and not await signals_read():
            due = [d for d in due if not d.overtaken_only]
        for d in due:
            await self.close_day(d.day)
        return [d.day for d in due]

    async def run_closer(self, idle_s: float, check_s: float, signals_read: SignalsRead | None = None) -> None:
        """Background task: close days as they become due (woken early when a batch or a day's signal lands)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.day_activity.wait(), check_s)
            self.day_activity.clear()
            try:
                await self.close_due_days(idle_s, signals_read)
            except Exception:  # a closer that died would leave every later day unpublished
                log.exception("features.close_failed")  # the day stays open: the next check retries it
