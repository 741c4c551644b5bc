"""0007: the history's index by day is a block-range index, and the close's read of a day still finds the day by it."""

from __future__ import annotations

import datetime as dt

import asyncpg
from support.migrations import move

from hubpulse_common.db import migrate
from hubpulse_features.app import MIGRATIONS

VERSION_TABLE = "alembic_version_features"
DAY_INDEX = "SELECT indexdef FROM pg_indexes WHERE indexname = 'feature_history_day'"


async def test_the_history_is_found_by_day_through_a_block_range_index(database_url: str) -> None:
    await migrate(database_url, MIGRATIONS, version_table=VERSION_TABLE)
    conn = await asyncpg.connect(database_url)
    try:
        assert "USING brin (snapshot_date)" in await conn.fetchval(DAY_INDEX)
        day = dt.date(2025, 2, 3)
        await conn.execute(
            "INSERT INTO feature_history (model_id, snapshot_date, downloads, likes)"
            " SELECT 'org/m' || i, $1::date - (i % 20), i, 0 FROM generate_series(1, 20000) i",
            day,
        )
        await conn.execute("ANALYZE feature_history")
        await conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            r[0] for r in await conn.fetch("EXPLAIN SELECT * FROM feature_history WHERE snapshot_date = $1", day)
        )
        assert "Bitmap Index Scan on feature_history_day" in plan, plan
        assert await conn.fetchval("SELECT count(*) FROM feature_history WHERE snapshot_date = $1", day) == 1000
        await move(database_url, MIGRATIONS, VERSION_TABLE, "downgrade", "0006")
        assert "USING btree (snapshot_date)" in await conn.fetchval(DAY_INDEX)
        await move(database_url, MIGRATIONS, VERSION_TABLE, "upgrade", "0007")
        assert "USING brin (snapshot_date)" in await conn.fetchval(DAY_INDEX)
    finally:
        await conn.close()
