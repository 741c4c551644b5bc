"""Two replicas' first batches of a new day create its stream partition at once: neither batch fails."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid

from features.support import fetch, received
from hubpulse_common.db import create_pool, migrate
from hubpulse_common.events import ModelSnapshot
from hubpulse_common.kafka import EventBus
from hubpulse_features import repository
from hubpulse_features.app import MIGRATIONS
from hubpulse_features.handlers import FeaturesWorker


async def test_a_batch_waiting_on_another_replicas_new_partition_goes_on(service_env, database_url) -> None:
    await migrate(database_url, MIGRATIONS, version_table="alembic_version_features")
    bus = EventBus(service_env["HUBPULSE_KAFKA_BOOTSTRAP"], client_id="features-partitions-test")  # never used
    pool = await create_pool(database_url)
    # a day no other test streams (its partition must not exist yet), before theirs (it overtakes none of them)
    day = dt.date(1990, 1, 1) + dt.timedelta(days=random.randrange(3000))
    prefix = f"sp{uuid.uuid4().hex[:6]}-"
    snapshots = [ModelSnapshot(model_id=f"{prefix}m{i}", snapshot_date=day, downloads=i, likes=1) for i in range(5)]
    try:
        await repository.ensure_feature_set(pool)
        worker = FeaturesWorker(pool, bus)
        async with pool.acquire() as other, other.transaction():
            # the other replica's first batch of the day: it has created the partition, not yet committed
            await repository.share_days(other, [day])
            await repository._ensure_stream_partitions(other, [day])
            batch = asyncio.create_task(worker.handle(received(snapshots)))
            await asyncio.sleep(0.5)
            assert not batch.done()  # it waits for the other's CREATE
        await batch  # and then goes on with the partition the other one made
        rows = await fetch(database_url, "SELECT count(*) AS n FROM feature_stream WHERE snapshot_date = $1", day)
        assert rows[0]["n"] == len(snapshots)
    finally:
        # no open day left behind, and nothing published (the scorer tests read the topic from its start)
        async with pool.acquire() as conn:
            await conn.execute(f"DROP TABLE IF EXISTS feature_stream_{day:%Y%m%d}")
            for table in ("feature_history", "feature_days"):
                await conn.execute(f"DELETE FROM {table} WHERE snapshot_date = $1", day)  # noqa: S608
        await pool.close()
