"""0004: the identities are keyed by the Hub's `_id` alone, and what reads them still finds them."""

from __future__ import annotations

import datetime as dt

import asyncpg
from support.migrations import move

from hubpulse_common import db
from hubpulse_ingestor import repository
from hubpulse_ingestor.app import MIGRATIONS

VERSION_TABLE = "alembic_version_ingestor"
DAY = dt.date(2025, 3, 1)


async def _indexes(conn: asyncpg.Connection) -> set[str]:
    return {r["indexname"] for r in await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'hub_models'")}


async def test_identities_are_indexed_by_hub_id_only_and_a_resumed_day_still_finds_them(database_url: str) -> None:
    await db.migrate(database_url, MIGRATIONS, VERSION_TABLE)
    conn = await asyncpg.connect(database_url)
    pool = await db.create_pool(database_url, min_size=1, max_size=2)
    try:
        assert await _indexes(conn) == {"hub_models_pkey"}
        payload = '[{"hub_id": "65f000000000000000000001", "model_id": "org/a"}]'
        assert await repository.identify(pool, payload, DAY) == []
        await repository.ensure_partition(conn, DAY)
        await conn.execute(
            "INSERT INTO snapshots (snapshot_date, model_id, downloads, likes, source)"
            " VALUES ($1, 'org/a', 1, 0, 'hub')",
            DAY,
        )
        # what a resumed walk of the day skips: the stored ids and their `_id`s
        assert await repository.taken_on(pool, DAY) == {"org/a", "65f000000000000000000001"}
        await move(database_url, MIGRATIONS, VERSION_TABLE, "downgrade", "0003")
        assert await _indexes(conn) == {"hub_models_pkey", "hub_models_model_id"}
        await move(database_url, MIGRATIONS, VERSION_TABLE, "upgrade", "0004")
        assert await _indexes(conn) == {"hub_models_pkey"}
    finally:
        await pool.close()
        await conn.close()
