"""One ingestion cycle: walk every Hub page, write each batch of rows and publish its events, then checkpoint.

Order per batch: rows upserted and events acknowledged by the broker (both at once), then the cursor
checkpointed. A kill at any point resumes from the last checkpoint; the batch in flight is written and
published again, which the upsert and the consumers' natural-key dedupe absorb (exactly one row per model-day).

Pipelined: a thread fetches, parses and encodes pages ahead (huggingface_hub's HTTP is blocking; at most
_PREFETCH_PAGES pages wait), while one batch at a time is written and published in the background and the
next one fills up. Each model is encoded once (`snapshots.encode_page`); PostgreSQL and Kafka get the same bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

from hubpulse_common.events import ModelSnapshot
from hubpulse_common.kafka import EventBus
from hubpulse_common.logging import get_logger
from hubpulse_ingestor import repository
from hubpulse_ingestor.hub import FailedPage, HubPages, Page
from hubpulse_ingestor.metrics import (
    CYCLE_SECONDS,
    CYCLES,
    LAST_CYCLE_FINISHED,
    LAST_CYCLE_MODELS,
    LAST_CYCLE_PAGES,
    MODELS,
    PAGES,
    RETRIES,
)
from hubpulse_ingestor.settings import IngestorSettings
from hubpulse_ingestor.snapshots import EncodedSnapshots, SnapshotRow, Source, encode_page, encode_rows

T = TypeVar("T")

log = get_logger(__name__)

HUB_SOURCE: Source = "hub"
_PREFETCH_PAGES = 8

Progress = Callable[[int, int], None]  # (models written so far, pages so far)


class SnapshotSink:
    """Where snapshot rows go, for the Hub cycle and `hubpulse import` alike: PostgreSQL, then Kafka."""

    def __init__(self, pool: asyncpg.Pool, bus: EventBus, source: Source) -> None:
        self._pool, self._bus, self._source = pool, bus, source

    async def write(self, rows: Sequence[SnapshotRow]) -> None:
        await self.write_encoded(encode_rows(rows))

    async def write_encoded(self, batch: EncodedSnapshots) -> None:
        """Upsert and publish at once (nothing downstream reads `snapshots`); returns when both are durable."""
        if not batch.values:
            return
        await asyncio.gather(
            repository.upsert_encoded(self._pool, batch),
            self._bus.publish_bulk(ModelSnapshot.topic, batch.keys, batch.values),
        )
        MODELS.labels(self._source).inc(len(batch))


@dataclass
class CycleResult:
    cycle_id: int
    status: str
    snapshot_date: dt.date | None
    models: int
    pages: int
    retries: int
    failed_pages: list[dict[str, Any]]
    resumed: bool
    seconds: float


@dataclass
class _Pending:
    """What has been fetched since the last checkpoint."""

    batch: EncodedSnapshots = field(default_factory=EncodedSnapshots)
    pages: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    next_url: str | None = None


def in_daemon_thread(fn: Callable[[str], T], arg: str) -> asyncio.Future[T]:
    """Run a blocking Hub fetch in a daemon thread.

    Unlike `asyncio.to_thread`, shutdown does not wait for it: a page fetch can block for minutes (timeouts
    times retries against a slow Hub), and abandoning it is safe because the cursor checkpoint makes the
    next start fetch that page again.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def run() -> None:
        try:
            result = fn(arg)
        except BaseException as exc:  # handed to the awaiting task, which decides
            callback = functools.partial(settle, functools.partial(future.set_exception, exc))
        else:
            callback = functools.partial(settle, functools.partial(future.set_result, result))
        with contextlib.suppress(RuntimeError):  # the loop is gone: we were abandoned at shutdown
            loop.call_soon_threadsafe(callback)

    threading.Thread(target=run, name="hub-fetch", daemon=True).start()
    return future


def _final_status(failed: list[dict[str, Any]], stopped_early: bool) -> str:
    if stopped_early:
        return "failed"
    return "completed_with_errors" if failed else "completed"


async def run_cycle(
    pool: asyncpg.Pool, bus: EventBus, settings: IngestorSettings, on_progress: Progress | None = None
) -> CycleResult:
    """Run (or resume) the Hub cycle to its end."""
    started = time.perf_counter()
    retries: list[str] = []

    def on_retry(reason: str) -> None:  # called from the fetching thread
        retries.append(reason)
        RETRIES.labels(reason).inc()

    hub = HubPages(settings, on_retry=on_retry)
    cycle = await repository.running_cycle(pool, HUB_SOURCE)
    resumed = cycle is not None
    if cycle is None:
        cycle = await repository.start_cycle(pool, HUB_SOURCE, hub.first_url())
    else:
        await repository.mark_resumed(pool, cycle["cycle_id"])
    cycle_id: int = cycle["cycle_id"]
    day: dt.date | None = cycle["snapshot_date"]
    totals = {"models": int(cycle["models"]), "pages": int(cycle["pages"]), "retries": int(cycle["retries"])}
    listed = totals["models"]  # what a resumed cycle already stored was listed before
    failed_all: list[dict[str, Any]] = list(cycle["failed_pages"])
    log.info("ingest.cycle_started", cycle_id=cycle_id, resumed=resumed, url=cycle["next_url"])

    queue: asyncio.Queue[tuple[Page | FailedPage, EncodedSnapshots | None] | None] = asyncio.Queue(
        maxsize=_PREFETCH_PAGES
    )
    # dated by the Hub's own day: the cycle's (when resuming) or the first good page's
    fetch_day: list[dt.date | None] = [day]

    def fetch_encoded(url: str) -> tuple[Page | FailedPage, EncodedSnapshots | None]:
        page = hub.fetch(url)
        if isinstance(page, FailedPage):
            return page, None
        page_day = fetch_day[0] = fetch_day[0] or page.served_on
        return page, encode_page(page.items, page_day, HUB_SOURCE)

    async def produce(url: str | None) -> None:
        while url is not None:
            fetched = await in_daemon_thread(fetch_encoded, url)
            await queue.put(fetched)
            url = fetched[0].next_url
        await queue.put(None)

    sink = SnapshotSink(pool, bus, HUB_SOURCE)
    pending = _Pending(next_url=cycle["next_url"])

    reported_retries = 0

    async def flush(done: _Pending, snapshot_date: dt.date | None) -> None:
        nonlocal reported_retries
        await sink.write_encoded(done.batch)
        new_retries, reported_retries = len(retries) - reported_retries, len(retries)
        await repository.checkpoint(
            pool,
            cycle_id,
            snapshot_date=snapshot_date,
            next_url=done.next_url,
            pages=done.pages,
            models=len(done.batch),
            retries=new_retries,
            failed_pages=done.failed,
        )
        totals["models"] += len(done.batch)
        totals["pages"] += done.pages
        totals["retries"] += new_retries
        failed_all.extend(done.failed)
        if on_progress is not None:
            on_progress(totals["models"], totals["pages"])

    writing: asyncio.Task[None] | None = None

    async def hand_over() -> None:
        """Start writing the pending batch once the previous one is durable (checkpoints stay in order)."""
        nonlocal pending, writing
        if writing is not None:
            await writing
        done, pending = pending, _Pending(next_url=pending.next_url)
        writing = asyncio.create_task(flush(done, day), name=f"ingest-write:{cycle_id}")

    producer = asyncio.create_task(produce(cycle["next_url"]), name=f"ingest-fetch:{cycle_id}")
    stopped_early = False
    try:
        while (fetched := await queue.get()) is not None:
            item, encoded = fetched
            pending.pages += 1
            pending.next_url = item.next_url
            if isinstance(item, FailedPage):
                PAGES.labels("failed").inc()
                pending.failed.append({"url": item.url, "error": item.error})
                log.error("ingest.page_failed", cycle_id=cycle_id, url=item.url, error=item.error)
                stopped_early = item.next_url is None
                continue
            PAGES.labels("ok").inc()
            listed += len(item.items)
            day = day or item.served_on
            assert encoded is not None
            pending.batch.extend(encoded)
            if len(pending.batch) >= settings.batch_models:
                await hand_over()
        await hand_over()
        assert writing is not None
        await writing
    finally:
        producer.cancel()
        if writing is not None and not writing.done():
            writing.cancel()
    status = _final_status(failed_all, stopped_early)
    error = failed_all[-1]["error"] if stopped_early else None
    await repository.finish_cycle(pool, cycle_id, status, error)
    seconds = time.perf_counter() - started
    CYCLES.labels(status).inc()
    CYCLE_SECONDS.set(seconds)
    LAST_CYCLE_FINISHED.labels(status).set(time.time())
    LAST_CYCLE_MODELS.labels("listed").set(listed)
    LAST_CYCLE_MODELS.labels("stored").set(totals["models"])
    LAST_CYCLE_PAGES.labels("ok").set(totals["pages"] - len(failed_all))
    LAST_CYCLE_PAGES.labels("skipped").set(len(failed_all))
    log.info("ingest.cycle_finished", cycle_id=cycle_id, status=status, **totals, failed_pages=len(failed_all))
    return CycleResult(
        cycle_id=cycle_id,
        status=status,
        snapshot_date=day,
        models=totals["models"],
        pages=totals["pages"],
        retries=totals["retries"],
        failed_pages=failed_all,
        resumed=resumed,
        seconds=seconds,
    )
