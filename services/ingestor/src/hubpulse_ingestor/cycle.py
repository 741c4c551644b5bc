"""One ingestion cycle: walk every Hub page, write each batch of rows and publish its events, then checkpoint.

Order per batch: rows upserted, events acknowledged by the broker, then the cursor checkpointed. A kill at
any point resumes from the last checkpoint; the batch in flight is written and published again, which the
upsert and the consumers' natural-key dedupe absorb (exactly one row per model-day).
Fetching runs ahead in a thread (huggingface_hub's HTTP is blocking) while the previous batch is written.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from hubpulse_common.kafka import EventBus
from hubpulse_common.logging import get_logger
from hubpulse_ingestor import repository
from hubpulse_ingestor.hub import FailedPage, HubPages, Page
from hubpulse_ingestor.metrics import CYCLE_SECONDS, CYCLES, MODELS, PAGES, RETRIES
from hubpulse_ingestor.settings import IngestorSettings
from hubpulse_ingestor.snapshots import SnapshotRow, Source, rows_from_page, to_events

log = get_logger(__name__)

HUB_SOURCE: Source = "hub"
_PREFETCH_PAGES = 8

Progress = Callable[[int, int], None]  # (models written so far, pages so far)


class SnapshotSink:
    """Where snapshot rows go, for the Hub cycle and `hubpulse import` alike: PostgreSQL, then Kafka."""

    def __init__(self, pool: asyncpg.Pool, bus: EventBus, source: Source) -> None:
        self._pool, self._bus, self._source = pool, bus, source

    async def write(self, rows: Sequence[SnapshotRow]) -> None:
        await repository.upsert_snapshots(self._pool, rows)
        await self._bus.publish_many(to_events(rows))
        MODELS.labels(self._source).inc(len(rows))


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

    rows: list[SnapshotRow] = field(default_factory=list)
    pages: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    next_url: str | None = None


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
    failed_all: list[dict[str, Any]] = list(cycle["failed_pages"])
    log.info("ingest.cycle_started", cycle_id=cycle_id, resumed=resumed, url=cycle["next_url"])

    queue: asyncio.Queue[Page | FailedPage | None] = asyncio.Queue(maxsize=_PREFETCH_PAGES)

    async def produce(url: str | None) -> None:
        while url is not None:
            page = await asyncio.to_thread(hub.fetch, url)
            await queue.put(page)
            url = page.next_url
        await queue.put(None)

    sink = SnapshotSink(pool, bus, HUB_SOURCE)
    pending = _Pending(next_url=cycle["next_url"])

    reported_retries = 0

    async def flush() -> None:
        nonlocal pending, reported_retries
        await sink.write(pending.rows)
        new_retries, reported_retries = len(retries) - reported_retries, len(retries)
        await repository.checkpoint(
            pool,
            cycle_id,
            snapshot_date=day,
            next_url=pending.next_url,
            pages=pending.pages,
            models=len(pending.rows),
            retries=new_retries,
            failed_pages=pending.failed,
        )
        totals["models"] += len(pending.rows)
        totals["pages"] += pending.pages
        totals["retries"] += new_retries
        failed_all.extend(pending.failed)
        pending = _Pending(next_url=pending.next_url)
        if on_progress is not None:
            on_progress(totals["models"], totals["pages"])

    producer = asyncio.create_task(produce(cycle["next_url"]), name=f"ingest-fetch:{cycle_id}")
    stopped_early = False
    try:
        while (item := await queue.get()) is not None:
            pending.pages += 1
            pending.next_url = item.next_url
            if isinstance(item, FailedPage):
                PAGES.labels("failed").inc()
                pending.failed.append({"url": item.url, "error": item.error})
                log.error("ingest.page_failed", cycle_id=cycle_id, url=item.url, error=item.error)
                stopped_early = item.next_url is None
                continue
            PAGES.labels("ok").inc()
            day = day or item.served_on
            pending.rows.extend(rows_from_page(item.items, day))
            if len(pending.rows) >= settings.batch_models:
                await flush()
        await flush()
    finally:
        producer.cancel()
    status = _final_status(failed_all, stopped_early)
    error = failed_all[-1]["error"] if stopped_early else None
    await repository.finish_cycle(pool, cycle_id, status, error)
    seconds = time.perf_counter() - started
    CYCLES.labels(status).inc()
    CYCLE_SECONDS.set(seconds)
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
