"""Two features replicas (deploy/k8s runs two) on one database: a day is closed by one of them, once."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

from support.topics import topic_records

from features.support import fetch, hub_snapshots, received
from hubpulse_common.db import create_pool, migrate
from hubpulse_common.events import ModelFeaturesPacked
from hubpulse_common.kafka import EventBus, partition_slots
from hubpulse_common.synthetic import SyntheticHub
from hubpulse_features import repository
from hubpulse_features.app import MIGRATIONS
from hubpulse_features.handlers import FeaturesWorker


async def test_a_day_is_closed_by_one_replica_and_a_late_batch_reopens_it(service_env, database_url) -> None:
    await migrate(database_url, MIGRATIONS, version_table="alembic_version_features")
    bus = EventBus(service_env["HUBPULSE_KAFKA_BOOTSTRAP"], client_id="features-replicas-test")
    await bus.start()
    pools = [await create_pool(database_url) for _ in range(2)]
    try:
        await repository.ensure_feature_set(pools[0])
        first, second = (FeaturesWorker(pool, bus) for pool in pools)
        hub = SyntheticHub(400, 2, seed=11)
        prefix = f"rep{uuid.uuid4().hex[:6]}-"
        events = hub_snapshots(hub, 0, prefix)
        day = events[0].snapshot_date
        await first.handle(received(events[:-200]))

        async with pools[1].acquire() as conn:
            assert await repository.claim_day(conn, day)  # the other replica is closing the day
            assert await first.close_day(day) == 0  # so this one stands aside
            late = asyncio.create_task(second.handle(received(events[-200:-100])))
            await asyncio.sleep(0.5)
            assert not late.done()  # a late batch for that day waits for the close...
            await repository.release_day(conn, day)
        await late
        open_sql = "SELECT closed_at IS NULL AS open FROM feature_days WHERE snapshot_date = $1"
        rows = await fetch(database_url, open_sql, day)
        assert rows[0]["open"]  # ...and then reopens it, so its rows get closed too

        # Both replicas see the day due and close it at once: one does the work, the other stands aside.
        closed = await asyncio.gather(first.close_day(day), second.close_day(day))
        assert sorted(closed) == [0, len(events) - 100]
        # Later rows reopen the closed day, and it is closed (published) again.
        await first.handle(received(events[-100:]))
        assert await second.close_day(day) == len(events)
        final = await fetch(
            database_url,
            "SELECT count(*) AS n FROM feature_rows WHERE snapshot_date = $1 AND NOT provisional",
            day,
        )
        assert final[0]["n"] == len(events)

        # The day was published twice, sliced differently: each model-day's publications sit on one partition (the
        # one its key gives), so a consumer applies them in order.
        partitions = await bus.partition_count(ModelFeaturesPacked.topic)
        ours = [
            (partition, m)
            for partition, value in await topic_records(
                service_env["HUBPULSE_KAFKA_BOOTSTRAP"], ModelFeaturesPacked.topic
            )
            for m in ModelFeaturesPacked.model_validate_json(value).model_id
            if m.startswith(prefix)
        ]
        published = Counter(m for _, m in ours)
        assert set(published.values()) == {1, 2}
        assert sum(published.values()) == 2 * len(events) - 100
        keys = [ModelFeaturesPacked.key_of(day.isoformat(), m).encode() for _, m in ours]
        assert [p for p, _ in ours] == partition_slots(keys, partitions).tolist()
    finally:
        for pool in pools:
            await pool.close()
        await bus.stop()
