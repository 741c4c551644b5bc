"""The ingestor's day-complete signal (hub.ingest.v1): sent once a walk has stored and published the whole day,
with the day's total, also when the walk was resumed after it stopped."""

from __future__ import annotations

import asyncpg
from support.polling import wait_for

from hubpulse_common.events import DayIngested
from hubpulse_common.kafka import EventBus
from hubpulse_ingestor.cycle import run_cycle
from hubpulse_ingestor.settings import IngestorSettings

from .conftest import PAGE, EventTap, Replay

Stores = tuple[asyncpg.Pool, EventBus]


async def test_a_walk_announces_its_day_once_complete_with_the_days_total_after_a_resume(
    replay: Replay, settings: IngestorSettings, stores: Stores, signals: EventTap[DayIngested]
) -> None:
    pool, bus = stores
    # the trending list and three pages succeed, then the Hub fails for good: the walk stops mid-day
    replay.post("/_replay/faults", {"fail_after": 4, "fail_next": 10_000, "fail_status": 504})
    stopped = await run_cycle(pool, bus, settings)
    assert stopped.status == "interrupted"
    assert await signals.read() == []  # an unfinished day is not announced

    replay.post("/_replay/faults", {})
    resumed = await run_cycle(pool, bus, settings)

    assert (resumed.status, resumed.resumed) == ("completed", True)
    assert stopped.models == 3 * PAGE < replay.models(0)
    # the broker's end offsets can trail an acknowledged write (seconds on a loaded machine): read until it shows
    got = await wait_for(signals.read, lambda events: len(events) > 0, timeout_s=60, what="the day's signal")
    announced = [(key.decode(), e.snapshot_date, e.models, e.source) for key, e in got]
    # the day's total (both runs), keyed by the day
    day = replay.day(0)
    assert announced == [(day.isoformat(), day, replay.models(0), "hub")]
