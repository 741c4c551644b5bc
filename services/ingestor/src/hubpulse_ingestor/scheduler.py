"""The background loop of the service: resume an unfinished cycle at once, else start one every interval."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

import asyncpg

from hubpulse_common.kafka import EventBus
from hubpulse_common.logging import get_logger
from hubpulse_ingestor import repository
from hubpulse_ingestor.cycle import HUB_SOURCE, run_cycle
from hubpulse_ingestor.identities import KnownIdentities
from hubpulse_ingestor.metrics import LAST_CYCLE_FINISHED
from hubpulse_ingestor.settings import IngestorSettings

log = get_logger(__name__)

_FAILURE_PAUSE_S = 30.0


def seconds_until_due(latest: dict[str, object] | None, now: dt.datetime, interval_s: float) -> float:
    """0 when a cycle should run now: none ever ran, one is unfinished, or the last started an interval ago."""
    if latest is None or latest["status"] == "running":
        return 0.0
    started = latest["started_at"]
    assert isinstance(started, dt.datetime)
    return max(0.0, (started + dt.timedelta(seconds=interval_s) - now).total_seconds())


async def run_scheduler(
    pool: asyncpg.Pool, bus: EventBus, settings: IngestorSettings, wake: asyncio.Event | None = None
) -> None:
    """Runs until cancelled (service shutdown); a cancelled cycle stays 'running' and resumes next start.
    Setting `wake` starts a cycle now instead of at the next interval (POST /cycles)."""
    wake = wake or asyncio.Event()
    # the staleness alert reads this gauge: a restarted pod reports the cycles its predecessors finished
    for status, finished_at in await repository.last_finished(pool):
        LAST_CYCLE_FINISHED.labels(status).set(finished_at.timestamp())
    known = KnownIdentities()  # from one day's walk to the next: each asks PostgreSQL about new identities only
    while True:
        latest = await repository.latest_cycle(pool, HUB_SOURCE)
        wait_s = seconds_until_due(latest, dt.datetime.now(dt.UTC), settings.ingest_interval_s)
        if wait_s > 0 and not wake.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), wait_s)
            continue
        wake.clear()
        try:
            result = await run_cycle(pool, bus, settings, known=known)
            if result.status == "interrupted":  # a page kept failing: resume from it after a pause
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), settings.interrupted_pause_s)
        except (OSError, asyncpg.PostgresError, RuntimeError) as exc:
            # The store or broker went away mid-cycle: the checkpoint stands, try again shortly.
            log.error("ingest.cycle_interrupted", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(min(_FAILURE_PAUSE_S, settings.ingest_interval_s))
