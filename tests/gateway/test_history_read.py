"""A model's history (the model page's charts) is read through catalog_daily's key, renamed models included: the
read of a model's days under its old names once took the whole table (a filter, not an index condition)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import asyncpg

from hubpulse_common import db
from hubpulse_gateway.catalog.repository import _DAILY, _DAILY_RENAMED, daily
from hubpulse_ingestor.app import MIGRATIONS as INGESTOR_MIGRATIONS
from hubpulse_scorer.app import MIGRATIONS as SCORER_MIGRATIONS

DAYS, MODELS = 30, 5000
DAY0 = dt.date(2031, 1, 1)


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan."""
    return [plan, *(node for child in plan.get("Plans", []) for node in _nodes(child))]


async def test_a_models_history_reads_the_daily_key_for_its_names_old_and_new(database_url: str) -> None:
    await db.migrate(database_url, SCORER_MIGRATIONS, version_table="alembic_version_scorer")
    await db.migrate(database_url, INGESTOR_MIGRATIONS, version_table="alembic_version_ingestor")
    prefix = f"h{uuid.uuid4().hex[:6]}/"
    new, old = f"{prefix}model-7", f"{prefix}old-7"
    conn = await asyncpg.connect(database_url)
    try:
        # the key's order as migration 0019 leaves it: by day, then model
        assert "(snapshot_date, model_id)" in await conn.fetchval(
            "SELECT pg_get_indexdef('catalog_daily_pkey'::regclass)"
        )
        await conn.execute(
            "INSERT INTO catalog_daily (model_id, snapshot_date, downloads, likes, probability, model_version)"
            " SELECT $1 || 'model-' || m, $2::date + d, m, 1, 0.5, 'v1'"
            " FROM generate_series(0, $3 - 1) d, generate_series(0, $4 - 1) m",
            prefix,
            DAY0,
            DAYS,
            MODELS,
        )
        # the model's first three days were under its old name; the new name's row wins the day both have
        await conn.execute(
            "DELETE FROM catalog_daily WHERE model_id = $1 AND snapshot_date < $2", new, DAY0 + dt.timedelta(2)
        )
        await conn.executemany(
            "INSERT INTO catalog_daily (model_id, snapshot_date, downloads, likes, probability, model_version)"
            " VALUES ($1, $2, 1, 1, 0.1, 'v0')",
            [(old, DAY0 + dt.timedelta(d)) for d in range(3)],
        )
        await conn.execute(
            "INSERT INTO model_renames (old_id, new_id, hub_id, renamed_on) VALUES ($1, $2, 'hub-7', $3)",
            old,
            new,
            DAY0 + dt.timedelta(2),
        )
        await conn.execute("ANALYZE catalog_daily")
        for query in (_DAILY, _DAILY_RENAMED):
            plan = json.loads(await conn.fetchval("EXPLAIN (FORMAT JSON) " + query, new))[0]["Plan"]
            (read,) = [node for node in _nodes(plan) if node.get("Relation Name") == "catalog_daily"]
            # the key's condition on the model, not a filter of rows read otherwise
            assert "model_id" in read.get("Index Cond", ""), read
        async with asyncpg.create_pool(database_url, min_size=1, max_size=1) as pool:
            renamed, unrenamed = await daily(pool, new), await daily(pool, f"{prefix}model-8")
        assert [r["snapshot_date"] for r in renamed] == [DAY0 + dt.timedelta(d) for d in range(DAYS)]
        assert [r["model_version"] for r in renamed[:3]] == ["v0", "v0", "v1"]  # the old name's days, then its own
        assert [r["snapshot_date"] for r in unrenamed] == [DAY0 + dt.timedelta(d) for d in range(DAYS)]
        assert {r["model_version"] for r in unrenamed} == {"v1"}
    finally:
        await conn.execute("DELETE FROM catalog_daily WHERE model_id LIKE $1", prefix + "%")
        await conn.execute("DELETE FROM model_renames WHERE new_id LIKE $1", prefix + "%")
        await conn.close()
