"""Migration 0007: `feature_history` partitioned by day. The rows stored before stay where they are (the old table
becomes one partition over their days); a new day gets a partition of its own whose only index is its key; the
close reads one partition; the downgrade puts every row back into one table."""

from __future__ import annotations

import datetime as dt

import asyncpg
from support.alembic import move

from features.support import hub_snapshots, received
from hubpulse_common.db import create_pool
from hubpulse_common.kafka import EventBus
from hubpulse_common.synthetic import SyntheticHub
from hubpulse_features import repository
from hubpulse_features.app import MIGRATIONS
from hubpulse_features.handlers import FeaturesWorker

_TABLE = "alembic_version_features"
_ROWS = "SELECT model_id, snapshot_date, downloads FROM feature_history ORDER BY 1, 2"


async def _indexes(conn: asyncpg.Connection, table: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT pg_get_indexdef(indexrelid) AS d FROM pg_index WHERE indrelid = $1::regclass", table
    )
    return sorted(r["d"].split(" USING ", 1)[1] for r in rows)


async def test_history_partitions_keep_the_stored_rows_and_give_a_new_day_its_own(
    service_env: dict[str, str], database_url: str
) -> None:
    await move(database_url, MIGRATIONS, _TABLE, "upgrade", "0006")
    old = [dt.date(2024, 12, 1), dt.date(2024, 12, 3)]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.executemany(
            "INSERT INTO feature_history (model_id, snapshot_date, downloads, likes) VALUES ($1, $2, $3, 0)",
            [(f"org/m{i}", day, i) for day in old for i in range(3)],
        )
        stored = [tuple(r) for r in await conn.fetch(_ROWS)]
        await move(database_url, MIGRATIONS, _TABLE, "upgrade", "head")
        assert [tuple(r) for r in await conn.fetch(_ROWS)] == stored
        # the old table is one partition over its days, indexes kept
        bound = await conn.fetchval(
            "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'feature_history_legacy'"
        )
        assert bound == "FOR VALUES FROM ('2024-12-01') TO ('2024-12-04')"
        assert await _indexes(conn, "feature_history_legacy") == [
            "btree (model_id, snapshot_date)",
            "btree (snapshot_date)",
        ]

        # A batch of a new day, and a late row of a day inside the old range (it goes into the old table).
        bus = EventBus(service_env["HUBPULSE_KAFKA_BOOTSTRAP"], client_id="features-history-partitions-test")
        pool = await create_pool(database_url)
        try:
            await repository.ensure_feature_set(pool)
            worker = FeaturesWorker(pool, bus)
            events = hub_snapshots(SyntheticHub(30, 1, seed=3), 0, "hp-")
            day = events[0].snapshot_date
            late = events[0].model_copy(update={"snapshot_date": dt.date(2024, 12, 2)})
            await worker.handle(received(events))
            await worker.handle(received([late]))
            await worker.handle(received(events[:5]))  # redelivered: upserted, nothing added
        finally:
            await pool.close()
        name = f"feature_history_{day:%Y%m%d}"
        assert await _indexes(conn, name) == ["btree (model_id, snapshot_date)"]
        assert await conn.fetchval(f"SELECT count(*) FROM {name}") == len(events)  # noqa: S608
        assert await conn.fetchval("SELECT count(*) FROM feature_history_legacy") == len(stored) + 1
        assert await conn.fetchval("SELECT streamed FROM feature_days WHERE snapshot_date = $1", day) == len(events)
        # the close's reads take the day's partition only
        await repository.plan_close_read(conn)
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {repository._SELECT_DAY_ROWS}", day, "x"))
        assert name in plan
        assert "feature_history_legacy" not in plan

        everything = [tuple(r) for r in await conn.fetch(_ROWS)]
        await move(database_url, MIGRATIONS, _TABLE, "downgrade", "0006")
        assert [tuple(r) for r in await conn.fetch(_ROWS)] == everything
        assert await conn.fetchval("SELECT relkind::text FROM pg_class WHERE relname = 'feature_history'") == "r"
        assert await _indexes(conn, "feature_history") == ["btree (model_id, snapshot_date)", "btree (snapshot_date)"]
        await move(database_url, MIGRATIONS, _TABLE, "upgrade", "head")  # and up again, from one table
        assert [tuple(r) for r in await conn.fetch(_ROWS)] == everything
    finally:
        await conn.close()
