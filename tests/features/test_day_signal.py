"""The ingestor's day-complete signal (hub.ingest.v1) closes a day as soon as its last snapshots are streamed,
without waiting for the idle fallback; a redelivered signal closes nothing again."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
import uuid

import asyncpg
from support.polling import wait_for

from features.support import fetch, hub_snapshots, publish, received, running, settings_for
from hubpulse_common.db import create_pool, migrate
from hubpulse_common.events import DayIngested
from hubpulse_common.kafka import EventBus
from hubpulse_common.synthetic import SyntheticHub
from hubpulse_features import repository
from hubpulse_features.app import MIGRATIONS, create_app
from hubpulse_features.handlers import FeaturesWorker
from hubpulse_features.settings import FeaturesSettings

_DAY = """
    SELECT d.closed_at, d.models, d.streamed, d.last_event_at, s.models AS signalled, s.signalled_at
    FROM feature_days d LEFT JOIN feature_day_signals s USING (snapshot_date) WHERE d.snapshot_date = $1
"""


async def _day(url: str, day: dt.date) -> asyncpg.Record | None:
    rows = await fetch(url, _DAY, day)
    return rows[0] if rows else None


async def test_a_signalled_day_closes_once_streamed_and_a_redelivered_signal_closes_nothing(
    service_env, database_url, own_kafka
) -> None:
    prefix = f"s{uuid.uuid4().hex[:6]}-"
    # a broker of its own: on the session's, the service first streams every snapshot earlier tests published
    service_env = {**service_env, "HUBPULSE_KAFKA_BOOTSTRAP": own_kafka.url}
    day = dt.date(2090, 1, 1)
    unseen = day + dt.timedelta(days=1)
    snapshots = [s.model_copy(update={"snapshot_date": day}) for s in hub_snapshots(SyntheticHub(400, 1, 5), 0, prefix)]
    n, first = len(snapshots), len(snapshots) - 100
    signal = DayIngested(snapshot_date=day, models=n, source="bench")
    # the idle fallback far away: only the signal can close the day within this test
    settings = settings_for(FeaturesSettings, service_env, database_url, day_close_idle_s=60.0, day_close_check_s=30.0)
    async with running(create_app(settings)):
        # the signal is read before the day's last snapshots are; a signal for a day not streamed opens nothing
        await publish(
            settings.kafka_bootstrap,
            [*snapshots[:first], signal, DayIngested(snapshot_date=unseen, models=5, source="bench")],
        )
        await wait_for(
            lambda: _day(database_url, day),
            lambda r: r is not None and (r["streamed"], r["signalled"]) == (first, n),
            what="the first model-days streamed and the signal recorded",
        )
        # model-days streamed again (a redelivered batch) are not new: the count does not move
        touched = await _day(database_url, day)
        assert touched is not None
        await publish(settings.kafka_bootstrap, snapshots[:50])
        await wait_for(
            lambda: _day(database_url, day),
            lambda r: r is not None and r["last_event_at"] > touched["last_event_at"],
            what="the redelivered batch streamed",
        )
        await asyncio.sleep(1.0)  # the closer, woken by both, has looked
        row = await _day(database_url, day)
        assert row is not None
        assert (row["closed_at"], row["streamed"]) == (None, first)  # not complete
        assert await _day(database_url, unseen) is None

        sent = time.monotonic()
        await publish(settings.kafka_bootstrap, snapshots[first:])
        closed = await wait_for(
            lambda: _day(database_url, day),
            lambda r: r is not None and r["closed_at"] is not None,
            timeout_s=15,
            interval_s=0.1,
            what="the day closed",
        )
        assert time.monotonic() - sent < 10  # seconds, not the 60 s idle fallback
        assert (closed["models"], closed["streamed"]) == (n, n)

        # the same signal again (redelivered), and a later one with the same count (another walk of the day)
        again = DayIngested(snapshot_date=day, models=n, source="bench")
        await publish(settings.kafka_bootstrap, [signal, again])
        await wait_for(
            lambda: _day(database_url, day),
            lambda r: r is not None and r["signalled_at"] == again.occurred_at,
            what="the later signal recorded",
        )
        await asyncio.sleep(1.0)
        after = await _day(database_url, day)
    assert after is not None
    assert (after["closed_at"], after["models"]) == (closed["closed_at"], n)  # not closed a second time


async def test_a_later_day_closes_an_unsignalled_day_but_a_signalled_one_waits_for_its_count(
    service_env, database_url
) -> None:
    """A consumer catching up drains one partition at a time: a later day's snapshots arrive long before an earlier
    day is complete. An announced day waits for its count (closed early, each of its remaining batches would reopen
    it for another whole close); a day nobody announced still closes once a later one has started."""
    await migrate(database_url, MIGRATIONS, version_table="alembic_version_features")
    pool = await create_pool(database_url)
    bus = EventBus(service_env["HUBPULSE_KAFKA_BOOTSTRAP"], client_id="catch-up-test")
    await bus.start()
    try:
        await repository.ensure_feature_set(pool)
        worker = FeaturesWorker(pool, bus)
        # days of their own, later than any other test's (one far-off decade per run)
        announced = dt.date(2100, 1, 1) + dt.timedelta(days=3 * secrets.randbelow(3000))
        unannounced, later = announced + dt.timedelta(days=1), announced + dt.timedelta(days=2)
        hub, prefix = SyntheticHub(60, 1, seed=9), f"c{uuid.uuid4().hex[:6]}-"
        rows = hub_snapshots(hub, 0, prefix)
        on = {
            day: [s.model_copy(update={"snapshot_date": day}) for s in rows] for day in (announced, unannounced, later)
        }
        half = len(rows) // 2
        await repository.record_signal(pool, DayIngested(snapshot_date=announced, models=len(rows), source="hub"))
        await worker.handle(received(on[announced][:half]))
        await worker.handle(received(on[unannounced][:half]))
        await worker.handle(received(on[later]))  # the later day shows up before the earlier ones are complete

        due = {d.day for d in await repository.days_to_close(pool, idle_s=600)}
        assert unannounced in due  # nobody said how many: a later day has started, as before
        assert announced not in due  # half its count: it waits

        await worker.handle(received(on[announced][half:]))
        assert announced in {d.day for d in await repository.days_to_close(pool, idle_s=600)}
        for day in sorted(on):  # closed, as a service would: no later test waits on them
            assert await worker.close_day(day) > 0
    finally:
        await pool.close()
        await bus.stop()
