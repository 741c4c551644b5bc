"""A day's close reads its rows while it ranks the day: PostgreSQL sorts and joins the rows' read while the ranks
are read and computed, instead of after them."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import pandas as pd

from features.support import hub_snapshots
from hubpulse_common.db import create_pool, migrate
from hubpulse_common.kafka import EventBus, Received
from hubpulse_common.synthetic import SyntheticHub
from hubpulse_features import repository, service
from hubpulse_features.app import MIGRATIONS
from hubpulse_features.handlers import FeaturesWorker


async def test_the_rows_read_starts_before_the_day_is_ranked(service_env, database_url, monkeypatch) -> None:
    await migrate(database_url, MIGRATIONS, version_table="alembic_version_features")
    order: list[str] = []
    rank, read = service.day_cross_features, repository.stream_day_rows

    def ranks(rank_inputs: pd.DataFrame) -> pd.DataFrame:
        cross = rank(rank_inputs)
        order.append("ranked")
        return cross

    async def rows(conn, day, sink: Callable[[pd.DataFrame], Awaitable[None]]) -> None:
        order.append("rows read")
        await read(conn, day, sink)

    monkeypatch.setattr(service, "day_cross_features", ranks)
    monkeypatch.setattr(repository, "stream_day_rows", rows)
    bus = EventBus(service_env["HUBPULSE_KAFKA_BOOTSTRAP"], client_id="features-close-overlap-test")
    await bus.start()
    pool = await create_pool(database_url)
    try:
        await repository.ensure_feature_set(pool)
        worker = FeaturesWorker(pool, bus)
        events = hub_snapshots(SyntheticHub(300, 1, seed=9), 0, f"co{uuid.uuid4().hex[:6]}-")
        await worker.handle([Received(e, "hub.snapshots.v1", 0, i, None) for i, e in enumerate(events)])
        assert await worker.close_day(events[0].snapshot_date) == len(events)
    finally:
        await pool.close()
        await bus.stop()
    assert order == ["rows read", "ranked"]
