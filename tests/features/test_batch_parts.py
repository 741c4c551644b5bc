"""A batch's rows are streamed in parts at once, each on its own connection, and a part committed before its sibling
failed is counted once when the batch comes again."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pandas as pd
import pytest

from features.support import received
from hubpulse_common.db import create_pool, migrate
from hubpulse_common.events import ModelSnapshot
from hubpulse_common.kafka import EventBus
from hubpulse_features import handlers, repository, service
from hubpulse_features.app import MIGRATIONS
from hubpulse_features.handlers import FeaturesWorker
from hubpulse_features.service import HistoryRow

MODELS = 2 * handlers.MIN_PART_ROWS + 200  # two parts


def _record(model_id: str, day: dt.date) -> HistoryRow:
    return HistoryRow(model_id, day, 1, 1, 1, None, None, None, None, [], None, None)


def test_a_models_rows_of_several_days_stay_in_one_part() -> None:
    days = [dt.date(2025, 1, 1), dt.date(2025, 1, 2)]
    records = [_record(f"org/m{i}", day) for day in days for i in range(1_000)]
    parts = service.parts(records, 2, 500)
    assert len(parts) == 2
    assert sorted(len(p) for p in parts) == [1_000, 1_000]
    models = [{r.model_id for r in part} for part in parts]
    assert not models[0] & models[1]
    assert sorted(r for part in parts for r in part) == sorted(records)
    assert service.parts(records[:999], 2, 500) == [records[:999]]  # under two parts' worth: one
    assert service.parts([], 2, 500) == [[]]


@pytest.fixture
async def worker_day(service_env, database_url) -> AsyncIterator[tuple[FeaturesWorker, dt.date, list[ModelSnapshot]]]:
    await migrate(database_url, MIGRATIONS, version_table="alembic_version_features")
    bus = EventBus(service_env["HUBPULSE_KAFKA_BOOTSTRAP"], client_id="features-parts-test")  # never used
    pool = await create_pool(database_url)
    # a day no other test streams, before theirs (it overtakes none of them)
    day = dt.date(1980, 1, 1) + dt.timedelta(days=random.randrange(3000))
    prefix = f"bp{uuid.uuid4().hex[:6]}-"
    snapshots = [
        ModelSnapshot(model_id=f"{prefix}org{i % 7}/m{i}", snapshot_date=day, downloads=10 * i, likes=i % 5)
        for i in range(MODELS)
    ]
    try:
        await repository.ensure_feature_set(pool)
        yield FeaturesWorker(pool, bus), day, snapshots
    finally:
        async with pool.acquire() as conn:
            await conn.execute(f"DROP TABLE IF EXISTS feature_stream_{day:%Y%m%d}")
            for table in ("feature_history", "feature_days"):
                await conn.execute(f"DELETE FROM {table} WHERE snapshot_date = $1", day)  # noqa: S608
        await pool.close()


async def _stored(database_url: str, day: dt.date) -> tuple[int, int, int, int]:
    """(history rows, stream rows, distinct model-days streamed, the day's count) of `day`."""
    conn = await asyncpg.connect(database_url)
    try:
        history = await conn.fetchval("SELECT count(*) FROM feature_history WHERE snapshot_date = $1", day)
        stream = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT model_id) AS d FROM feature_stream WHERE snapshot_date = $1", day
        )
        counted = await conn.fetchval(
            "SELECT COALESCE(max(streamed), 0) FROM feature_days WHERE snapshot_date = $1", day
        )
        return history, stream["n"], stream["d"], counted
    finally:
        await conn.close()


async def test_a_batchs_parts_run_at_once(worker_day, database_url, monkeypatch) -> None:
    worker, day, snapshots = worker_day
    meet = asyncio.Barrier(2)
    load_window = repository.load_window

    async def both_reading(*args: object) -> pd.DataFrame:
        # run one after the other, the first part would wait here for a second that never comes
        await asyncio.wait_for(meet.wait(), 10)
        return await load_window(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(repository, "load_window", both_reading)
    await worker.handle(received(snapshots))
    assert await _stored(database_url, day) == (MODELS, MODELS, MODELS, MODELS)


async def test_a_part_stored_before_its_sibling_failed_counts_once_when_the_batch_comes_again(
    worker_day, database_url, monkeypatch
) -> None:
    worker, day, snapshots = worker_day
    load_window = repository.load_window
    failing = {"left": 1}

    async def fail_after_sibling(conn: asyncpg.Connection, model_ids: list[str], *args: object) -> pd.DataFrame:
        # the part holding the last model fails once, and only once the other part has committed
        if snapshots[-1].model_id in model_ids and failing["left"]:
            failing["left"] -= 1
            for _ in range(200):
                if (await _stored(database_url, day))[3]:
                    break
                await asyncio.sleep(0.05)
            raise RuntimeError("this part fails")
        return await load_window(conn, model_ids, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(repository, "load_window", fail_after_sibling)
    with pytest.raises(ExceptionGroup):
        await worker.handle(received(snapshots))
    history, stream, _, counted = await _stored(database_url, day)
    assert 0 < history == stream == counted < MODELS  # one part stored and counted, the other rolled back
    await worker.handle(received(snapshots))  # the consumer's retry
    history, stream, streamed, counted = await _stored(database_url, day)
    assert (history, streamed, counted) == (MODELS, MODELS, MODELS)
    assert stream > MODELS  # the stored part's rows appended again (the close keeps each model-day's latest)
