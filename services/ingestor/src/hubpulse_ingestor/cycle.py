"""One ingestion cycle: walk every Hub page, write each batch of rows and publish its events, then checkpoint.

Order per batch: rows upserted and events acknowledged by the broker (both at once), then the cursor
checkpointed. A kill at any point resumes from the last checkpoint; the batch in flight is written and
published again, which the upsert and the consumers' natural-key dedupe absorb (exactly one row per model-day).

Pipelined: a thread fetches, parses and encodes pages ahead (huggingface_hub's HTTP is blocking; at most
_PREFETCH_PAGES pages wait), while one batch at a time is written and published in the background and the
next one fills up. Each model is checked once, as a row (`snapshots.encode_page`): PostgreSQL takes the rows, Kafka
their columns (`hub.snapshots.v2`, a message per partition's share of a batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import asyncpg

from hubpulse_common.events import DayIngested, ModelSnapshot, ModelSnapshotBatch
from hubpulse_common.kafka import EventBus
from hubpulse_common.logging import get_logger
from hubpulse_ingestor import repository
from hubpulse_ingestor.hub import RETRYABLE, FailedPage, HubPages, Page
from hubpulse_ingestor.identities import KnownIdentities
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
from hubpulse_ingestor.snapshots import (
    EncodedSnapshots,
    PageOutcome,
    SnapshotRow,
    Source,
    encode_page,
    encode_rows,
    snapshot_messages,
    snapshot_values,
    with_renames,
)

T = TypeVar("T")

log = get_logger(__name__)

HUB_SOURCE: Source = "hub"
_PREFETCH_PAGES = 8

Progress = Callable[[int, int], None]  # (models written so far, pages so far)


class SnapshotSink:
    """Where snapshot rows go, for the Hub cycle and `hubpulse import` alike: PostgreSQL, then Kafka
    (`hub.snapshots.v2`; `hub.snapshots.v1` as well with `publish_v1`)."""

    def __init__(self, pool: asyncpg.Pool, bus: EventBus, source: Source, *, publish_v1: bool = False) -> None:
        self._pool, self._bus, self._source, self._publish_v1 = pool, bus, source, publish_v1

    async def write(self, rows: Sequence[SnapshotRow]) -> list[bytes]:
        return await self.write_encoded(encode_rows(rows))

    async def write_encoded(self, batch: EncodedSnapshots) -> list[bytes]:
        """Upsert and publish at once (nothing downstream reads `snapshots`); returns when both are durable, with
        the keys of rows PostgreSQL refused (each alone; the row checks should leave none)."""
        if not batch.rows:
            return []
        refused, _ = await asyncio.gather(repository.upsert_encoded(self._pool, batch), self._publish(batch))
        MODELS.labels(self._source).inc(len(batch) - len(refused))
        return refused

    async def _publish(self, batch: EncodedSnapshots) -> None:
        messages = snapshot_messages(batch, await self._bus.partition_count(ModelSnapshotBatch.topic))
        v1 = snapshot_values(batch) if self._publish_v1 else []
        await asyncio.gather(
            self._bus.publish_encoded(ModelSnapshotBatch.topic, messages),
            self._bus.publish_bulk(ModelSnapshot.topic, batch.keys if v1 else [], v1),
        )

    async def day_ingested(self, day: dt.date) -> DayIngested:
        """Announce that every snapshot of `day` is durable (call once the day's last write has returned), with
        the day's total from the table: a walk resumed after a restart stored part of the day in an earlier run."""
        signal = DayIngested(snapshot_date=day, models=await repository.models_on(self._pool, day), source=self._source)
        await self._bus.publish(signal)
        log.info("ingest.day_ingested", day=day.isoformat(), models=signal.models, source=self._source)
        return signal


@dataclass
class CycleResult:
    cycle_id: int
    status: str
    snapshot_date: dt.date | None
    models: int  # stored
    pages: int
    retries: int
    failed_pages: list[dict[str, Any]]
    resumed: bool
    seconds: float
    listed: int = 0  # items the Hub listed
    skipped: dict[str, int] = field(default_factory=dict)  # items not stored, by reason
    cleaned: dict[str, int] = field(default_factory=dict)  # stored after cleaning, by what was cleaned
    renamed: int = 0
    walk_estimate_s: float | None = None  # a full walk at the Hub's quota (pages of the last walk)
    paced_s: float = 0.0  # waited for the quota window before it ran out


@dataclass
class _Pending:
    """What has been fetched since the last checkpoint."""

    batch: EncodedSnapshots = field(default_factory=EncodedSnapshots)
    pages: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    next_url: str | None = None


@dataclass
class _Report:
    """A cycle's running totals, checkpointed with the cursor so a resumed cycle reports the whole walk."""

    listed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    cleaned: Counter[str] = field(default_factory=Counter)
    renamed: int = 0

    @classmethod
    def of(cls, cycle: dict[str, Any]) -> _Report:
        return cls(int(cycle["listed"]), Counter(cycle["skipped"]), Counter(cycle["cleaned"]), int(cycle["renamed"]))

    def add(self, outcome: PageOutcome) -> None:
        self.listed += outcome.listed
        self.skipped.update(outcome.skipped)
        self.cleaned.update(outcome.cleaned)

    def as_json(self) -> dict[str, Any]:
        return {
            "listed": self.listed,
            "skipped": dict(self.skipped),
            "cleaned": dict(self.cleaned),
            "renamed": self.renamed,
        }


class Interrupted(Exception):
    """The walk stopped at a page that kept failing; the cycle stays open at that page's cursor."""


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


def _final_status(failed: list[dict[str, Any]], interrupted: bool) -> str:
    if interrupted:
        return "interrupted"
    return "completed_with_errors" if failed else "completed"


async def _walk_estimate(pool: asyncpg.Pool, hub: HubPages) -> float | None:
    """Seconds a full walk takes at the Hub's quota, from the pages of the last finished walk."""
    if hub.quota is None:
        return None
    pages = await pool.fetchval(
        "SELECT pages FROM ingest_cycles WHERE source = $1 AND status <> 'running' AND pages > 0"
        " ORDER BY cycle_id DESC LIMIT 1",
        HUB_SOURCE,
    )
    if not pages:
        return None
    seconds = hub.quota.walk_seconds(int(pages))
    log.info(
        "ingest.walk_estimate",
        pages=int(pages),
        quota=hub.quota.limit,
        window_s=hub.quota.window_s,
        seconds=round(seconds),
        message=f"a full walk of {pages} pages takes at least {seconds / 60:.0f} min at "
        f"{hub.quota.limit} requests per {hub.quota.window_s} s",
    )
    return seconds


async def _trending_ranks(hub: HubPages, top: int) -> dict[str, int]:
    if top <= 0:
        return {}
    try:
        return await in_daemon_thread(hub.trending, top)  # type: ignore[arg-type]
    except RETRYABLE as exc:  # the walk goes on without ranks; the day's list is simply not recorded
        log.error("ingest.trending_failed", error=f"{type(exc).__name__}: {exc}"[:500])
        return {}


class _Retries:
    """The fetching thread's retries (it calls this object), counted so each checkpoint records the new ones."""

    def __init__(self) -> None:
        self._reasons: list[str] = []
        self._reported = 0

    def __call__(self, reason: str) -> None:  # called from the fetching thread
        self._reasons.append(reason)
        RETRIES.labels(reason).inc()

    def since_last(self) -> int:
        seen = len(self._reasons)
        new, self._reported = seen - self._reported, seen
        return new


Fetched = tuple[Page | FailedPage, PageOutcome | None]


@dataclass
class _Totals:
    models: int
    pages: int
    retries: int


class Cycle:
    """One run of the Hub walk, from its cursor to the end or to a page that keeps failing: the running totals,
    the batch being filled and the batch being written are fields; fetching ahead, handing a batch over and
    writing it are methods."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        bus: EventBus,
        settings: IngestorSettings,
        hub: HubPages,
        cycle: dict[str, Any],
        *,
        resumed: bool,
        ranks: dict[str, int],
        retries: _Retries,
        on_progress: Progress | None,
        known: KnownIdentities,
    ) -> None:
        self._pool, self._settings, self._hub, self._known = pool, settings, hub, known
        self._ranks, self._retries, self._on_progress = ranks, retries, on_progress
        self._sink = SnapshotSink(pool, bus, HUB_SOURCE, publish_v1=settings.snapshots_publish_v1)
        self.cycle_id: int = cycle["cycle_id"]
        self.resumed = resumed
        self.day: dt.date | None = cycle["snapshot_date"]
        self.totals = _Totals(int(cycle["models"]), int(cycle["pages"]), int(cycle["retries"]))
        self.report = _Report.of(cycle)
        self.failed: list[dict[str, Any]] = list(cycle["failed_pages"])
        self.interrupted = False
        self._first_url: str | None = cycle["next_url"]
        # Each model once per day: keyed by the Hub's `_id` (a rename mid-walk is the same model), seeded with
        # what an earlier run already stored that day.
        self._taken: dict[dt.date, set[str]] = {}
        # the days this walk wrote (and the one its earlier runs did): each is announced complete at the end
        self.days: set[dt.date] = {self.day} if self.day is not None else set()
        self._queue: asyncio.Queue[Fetched | BaseException | None] = asyncio.Queue(maxsize=_PREFETCH_PAGES)
        self._pending = _Pending(next_url=self._first_url)
        self._writing: asyncio.Task[None] | None = None

    def _fetch_encoded(self, url: str) -> Fetched:
        page = self._hub.fetch(url)
        if isinstance(page, FailedPage):
            return page, None
        # dated by when it was observed: this page's own Date, never the day the cycle began
        seen = self._taken.setdefault(page.served_on, set())
        return page, encode_page(page.items, page.served_on, HUB_SOURCE, seen=seen, ranks=self._ranks)

    async def _produce(self, url: str | None) -> None:
        try:
            while url is not None:
                fetched = await in_daemon_thread(self._fetch_encoded, url)
                await self._queue.put(fetched)
                url = fetched[0].next_url
        except Exception as exc:  # handed to the consumer, which would otherwise wait for ever (audit H3)
            await self._queue.put(exc)
            return
        await self._queue.put(None)

    async def _flush(self, done: _Pending) -> None:
        # the batch's first day: a batch spanning two days (a walk across midnight) records its identities once
        day = min(done.batch.days) if done.batch.days else None
        # before publishing: a crash after it finds the same renames again (they move only below)
        asked = self._known.unknown(done.batch)
        moves = await repository.identify(self._pool, repository.identities(asked), day) if day is not None else []
        with_renames(done.batch, {move.new_id: move.old_id for move in moves})
        refused = await self._sink.write_encoded(done.batch)
        if refused:
            self.report.skipped["refused_by_database"] += len(refused)
            log.warning("ingest.rows_refused", cycle_id=self.cycle_id, model_ids=[k.decode() for k in refused][:50])
        if day is not None:
            await repository.record_renames(self._pool, day, moves)
            self.report.renamed += len(moves)
            for move in moves:
                log.info("ingest.model_renamed", old_id=move.old_id, new_id=move.new_id)
            self._known.remember(asked, renamed=[(move.hub_id, move.old_id) for move in moves])
        new_retries = self._retries.since_last()
        stored = len(done.batch) - len(refused)
        self.days.update(done.batch.days)
        await repository.checkpoint(
            self._pool,
            self.cycle_id,
            snapshot_date=day,
            next_url=done.next_url,
            pages=done.pages,
            models=stored,
            retries=new_retries,
            failed_pages=done.failed,
            report=self.report.as_json(),
        )
        self.totals.models += stored
        self.totals.pages += done.pages
        self.totals.retries += new_retries
        self.failed.extend(done.failed)
        if self._on_progress is not None:
            self._on_progress(self.totals.models, self.totals.pages)

    async def _hand_over(self) -> None:
        """Start writing the pending batch once the previous one is durable (checkpoints stay in order)."""
        if self._writing is not None:
            await self._writing
        done, self._pending = self._pending, _Pending(next_url=self._pending.next_url)
        self._writing = asyncio.create_task(self._flush(done), name=f"ingest-write:{self.cycle_id}")

    def _skip(self, page: FailedPage) -> None:
        """A page that failed for good: past it where the Hub named the next one, else the walk stops there."""
        PAGES.labels("failed").inc()
        log.error("ingest.page_failed", cycle_id=self.cycle_id, url=page.url, error=page.error)
        if page.next_url is None:
            # no way past it: keep the cursor at this page and resume from it later
            self.interrupted = True
            self.failed.append({"url": page.url, "error": page.error, "resumable": True})
            return
        self._pending.pages += 1
        self._pending.next_url = page.next_url
        self._pending.failed.append({"url": page.url, "error": page.error})

    async def _add(self, page: Page, outcome: PageOutcome) -> None:
        PAGES.labels("ok").inc()
        self._pending.pages += 1
        self._pending.next_url = page.next_url
        self.day = self.day or page.served_on
        self.report.add(outcome)
        self._pending.batch.extend(outcome.encoded)
        if len(self._pending.batch) >= self._settings.batch_models:
            await self._hand_over()

    async def walk(self) -> dt.date | None:
        """Walk to the end (or to a page that stops it); the Hub's day, where a resumed walk finds that day over
        (this walk then writes nothing, and today gets a walk of its own)."""
        if self.day is not None:
            self._taken[self.day] = await repository.taken_on(self._pool, self.day)
        producer = asyncio.create_task(self._produce(self._first_url), name=f"ingest-fetch:{self.cycle_id}")
        first_page = True
        try:
            while (fetched := await self._queue.get()) is not None:
                if isinstance(fetched, BaseException):
                    raise fetched
                item, outcome = fetched
                if isinstance(item, FailedPage):
                    self._skip(item)
                    if self.interrupted:
                        break
                    continue
                assert outcome is not None
                first_page, first_of_run = False, first_page
                if self.resumed and first_of_run and self.day is not None and item.served_on != self.day:
                    return item.served_on
                await self._add(item, outcome)
            await self._hand_over()
            assert self._writing is not None
            await self._writing
        finally:
            producer.cancel()
            if self._writing is not None and not self._writing.done():
                self._writing.cancel()
        return None

    async def finish(self, started: float, estimate: float | None) -> CycleResult:
        """Close the cycle in the database and the metrics; its result."""
        status = _final_status(self.failed, self.interrupted)
        if self.interrupted:
            await repository.mark_interrupted(self._pool, self.cycle_id, self.failed[-1]["error"])
        else:
            # before the cycle is marked finished: a crash in between resumes the finished walk, which announces
            # the days again (consumers take a repeated announcement as the same one)
            for day in sorted(self.days):
                await self._sink.day_ingested(day)
            await repository.finish_cycle(self._pool, self.cycle_id, status, None)
        seconds = time.perf_counter() - started
        totals, report = self.totals, self.report
        CYCLES.labels(status).inc()
        CYCLE_SECONDS.set(seconds)
        LAST_CYCLE_FINISHED.labels(status).set(time.time())
        LAST_CYCLE_MODELS.labels("listed").set(report.listed)
        LAST_CYCLE_MODELS.labels("stored").set(totals.models)
        LAST_CYCLE_PAGES.labels("ok").set(totals.pages - len(self.failed))
        LAST_CYCLE_PAGES.labels("skipped").set(len(self.failed))
        # the counts the log line and the result both carry: the totals' and the report's fields
        counts = {**asdict(totals), **report.as_json()}
        log.info(
            "ingest.cycle_finished",
            cycle_id=self.cycle_id,
            status=status,
            **counts,
            failed_pages=len(self.failed),
            paced_s=round(self._hub.paced_s, 1),
        )
        return CycleResult(
            cycle_id=self.cycle_id,
            status=status,
            snapshot_date=self.day,
            **counts,
            failed_pages=self.failed,
            resumed=self.resumed,
            seconds=seconds,
            walk_estimate_s=estimate,
            paced_s=self._hub.paced_s,
        )


async def run_cycle(
    pool: asyncpg.Pool,
    bus: EventBus,
    settings: IngestorSettings,
    on_progress: Progress | None = None,
    known: KnownIdentities | None = None,
) -> CycleResult:
    """Run (or resume) the Hub cycle to its end, or to a page that keeps failing (status 'interrupted': the
    cycle stays open at that page and the next run resumes there). known: the identities stored by earlier
    cycles of this process (the scheduler keeps them from one day to the next); none: every one is asked about."""
    known = known if known is not None else KnownIdentities()
    started = time.perf_counter()
    retries = _Retries()
    hub = HubPages(settings, on_retry=retries)
    cycle = await repository.running_cycle(pool, HUB_SOURCE)
    resumed = cycle is not None
    if cycle is None:
        cycle = await repository.start_cycle(pool, HUB_SOURCE, hub.first_url())
    else:
        await repository.mark_resumed(pool, cycle["cycle_id"])
    cycle_id: int = cycle["cycle_id"]
    day: dt.date | None = cycle["snapshot_date"]
    log.info("ingest.cycle_started", cycle_id=cycle_id, resumed=resumed, url=cycle["next_url"])
    ranks = await _trending_ranks(hub, settings.trending_top)
    if resumed and day is not None and hub.served_on is not None and hub.served_on != day:
        # the Hub's day moved on while this walk was stopped (even if its page still fails): start today's walk
        return await _restart_for_new_day(pool, bus, settings, cycle_id, day, hub.served_on, on_progress, known)
    estimate = await _walk_estimate(pool, hub)
    walk = Cycle(
        pool,
        bus,
        settings,
        hub,
        cycle,
        resumed=resumed,
        ranks=ranks,
        retries=retries,
        on_progress=on_progress,
        known=known,
    )
    today = await walk.walk()
    if today is not None and day is not None:
        # resumed on a later day than it began: that walk's day is over; today gets a walk of its own
        return await _restart_for_new_day(pool, bus, settings, cycle_id, day, today, on_progress, known)
    return await walk.finish(started, estimate)


async def _restart_for_new_day(
    pool: asyncpg.Pool,
    bus: EventBus,
    settings: IngestorSettings,
    cycle_id: int,
    began: dt.date,
    today: dt.date,
    on_progress: Progress | None,
    known: KnownIdentities,
) -> CycleResult:
    log.warning("ingest.cycle_expired", cycle_id=cycle_id, began=began.isoformat(), resumed_on=today.isoformat())
    await repository.finish_cycle(pool, cycle_id, "expired", f"resumed on {today}, a day after it began ({began})")
    CYCLES.labels("expired").inc()
    return await run_cycle(pool, bus, settings, on_progress, known)
