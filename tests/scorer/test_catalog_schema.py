"""The catalog's schema changes keep its data: 0005 moves features/explanation out, 0006 rebuilds the keys,
0007 stores the details as text; the day's catalog is swapped in once complete (0011), with the live table's shape."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import asyncpg
import numpy as np
import pytest
from support.migrations import move

from hubpulse_common import db, feature_vectors
from hubpulse_common.catalog_details import details_of
from hubpulse_common.feature_vectors import FeatureSet
from hubpulse_common.renames import Rename
from hubpulse_gateway.catalog.query import SearchQuery
from hubpulse_gateway.catalog.repository import walk_sql
from hubpulse_gateway.catalog.schemas import SortKey
from hubpulse_scorer import catalog_swap
from hubpulse_scorer.app import MIGRATIONS
from hubpulse_scorer.catalog_swap import (
    _FILL_DAY,
    _FILL_DAYS,
    KEEP_BUILD_DAYS,
    LIVE,
    NEXT,
    due_days,
    swap_day,
    swap_due_days,
)
from hubpulse_scorer.repository import _RENAMED_TABLES, SWAP_LOCK, build_partition, follow_renames, write_batch
from hubpulse_scorer.service import CATALOG_COLUMNS

VERSION_TABLE = "alembic_version_scorer"
VERSIONS = "SELECT model_id, updated_at, xmin::text FROM catalog_models"
FEATURES = {"likes_7d": 42.0, "log_downloads": 6.5}
SET = FeatureSet(tuple(FEATURES))
_WITH_DETAILS = f"FROM catalog_models m CROSS JOIN LATERAL ({details_of('m')}) d"
# a model's features as the model page reads them (the details of its catalog row), against the names of its set
DETAIL_FEATURES = f"SELECT d.features AS vector, d.names {_WITH_DETAILS} WHERE m.model_id = $1"


# the same from catalog_details itself (what holds every model's details at revisions before 0017)
KEPT_FEATURES = (
    "SELECT d.features AS vector, s.names FROM catalog_details d LEFT JOIN catalog_feature_sets s USING (feature_set) "
    "WHERE d.model_id = $1"
)


async def _features(
    executor: asyncpg.Pool | asyncpg.Connection, model_id: str, *, kept: bool = False
) -> dict[str, float | None]:
    row = await executor.fetchrow(KEPT_FEATURES if kept else DETAIL_FEATURES, model_id)
    assert row is not None
    return feature_vectors.decode(row["vector"], row["names"])


EXPLANATION = [{"feature": "likes_7d", "value": 42.0, "contribution": 0.7}]


async def _move(url: str, action: str, target: str) -> None:
    await move(url, MIGRATIONS, VERSION_TABLE, action, target)


async def _indexes(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'catalog_models'")
    return {r["indexname"] for r in rows}


async def test_upgrade_and_downgrade_keep_features_and_explanation(database_url: str) -> None:
    await _move(database_url, "upgrade", "0004_search_keys")
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO catalog_models (model_id, snapshot_date, downloads, likes, probability, explanation, features)"
            " VALUES ('org/a', '2025-01-08', 10, 2, 0.5, $1::jsonb, $2::jsonb),"
            " ('org/b', '2025-01-08', 5, 1, NULL, '[]', '{}')",
            json.dumps(EXPLANATION),
            json.dumps(FEATURES),
        )
        assert {"catalog_models_probability", "catalog_models_task"} <= await _indexes(conn)
        await db.migrate(database_url, MIGRATIONS, VERSION_TABLE)
        rows = await conn.fetch(
            "SELECT m.model_id, m.likes_7d, d.features, d.explanation, d.snapshot_date FROM catalog_models m "
            "JOIN catalog_details d USING (model_id) ORDER BY 1"
        )
        assert [(r["model_id"], r["likes_7d"]) for r in rows] == [("org/a", 42.0), ("org/b", None)]
        assert await _features(conn, "org/a") == FEATURES  # a vector since 0014
        assert rows[1]["features"] is None  # no features: no vector
        assert json.loads(rows[0]["explanation"]) == EXPLANATION
        assert rows[0]["snapshot_date"] == dt.date(2025, 1, 8)
        types = await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'catalog_details'"
        )
        assert {r["column_name"]: r["data_type"] for r in types}["features"] == "bytea"
        columns = {
            r["column_name"]
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'catalog_models'"
            )
        }
        assert not {"features", "explanation"} & columns
        indexes = await _indexes(conn)
        assert not {"catalog_models_probability", "catalog_models_task"} & indexes
        keydef = await conn.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = 'catalog_models_key_trend'")
        assert "tags" not in keydef

        await _move(database_url, "downgrade", "0004_search_keys")
        back = await conn.fetchrow("SELECT features, explanation FROM catalog_models WHERE model_id = 'org/a'")
        assert json.loads(back["features"]) == FEATURES
        assert json.loads(back["explanation"]) == EXPLANATION
        assert await conn.fetchval("SELECT to_regclass('catalog_details')") is None
        assert {"catalog_models_probability", "catalog_models_task"} <= await _indexes(conn)
    finally:
        await conn.close()


async def test_0014_stores_the_features_as_vectors_and_gives_the_same_json_back(database_url: str) -> None:
    await _move(database_url, "upgrade", "0013_explanations_on_demand")
    # values whose bits the downgrade must read back exactly: tiny, subnormal, the largest, negative, missing
    awkward = {"a": 0.1, "b": None, "c": -1.5e-300, "d": 5e-324, "e": 1.7976931348623157e308, "f": -2.0, "g": 3.0}
    reordered = dict(reversed(awkward.items()))  # another order of names: another feature set
    conn = await asyncpg.connect(database_url)
    try:
        await conn.executemany(
            "INSERT INTO catalog_details (model_id, snapshot_date, explanation, features) VALUES ($1, $2, '[]', $3)",
            [
                ("v/a", dt.date(2025, 1, 8), json.dumps(awkward)),
                ("v/b", dt.date(2025, 1, 8), json.dumps(reordered)),
                ("v/c", dt.date(2025, 1, 8), "{}"),
            ],
        )
        await _move(database_url, "upgrade", "0014_feature_vectors")
        assert await _features(conn, "v/a", kept=True) == awkward
        assert await _features(conn, "v/b", kept=True) == reordered
        assert list((await _features(conn, "v/b", kept=True)).keys()) == list(reordered)
        keys = {r["feature_set"] for r in await conn.fetch("SELECT feature_set FROM catalog_feature_sets")}
        assert keys == {FeatureSet(tuple(awkward)).key, FeatureSet(tuple(reordered)).key}  # SQL's key is Python's
        assert await conn.fetchval("SELECT features FROM catalog_details WHERE model_id = 'v/c'") is None

        await _move(database_url, "downgrade", "0013_explanations_on_demand")
        back = {
            r["model_id"]: r["features"] for r in await conn.fetch("SELECT model_id, features FROM catalog_details")
        }
        assert json.loads(back["v/a"]) == awkward
        assert list(json.loads(back["v/b"])) == list(reordered)
        assert json.loads(back["v/c"]) == {}
        assert await conn.fetchval("SELECT to_regclass('catalog_feature_sets')") is None
    finally:
        await conn.close()


def _record(model_id: str, day: dt.date, downloads: int, likes_7d: float) -> tuple[object, ...]:
    values: dict[str, object] = {
        "model_id": model_id,
        "tags": ["transformers"],
        "snapshot_date": day,
        "downloads": downloads,
        "likes": 3,
        "probability": 0.6,
        "model_version": "v1",
        "label": "trending",
        "threshold": 0.45,
        "likes_7d": likes_7d,
        "explanation": json.dumps(EXPLANATION),
        "feature_set": SET.key,
        "features": feature_vectors.encode(np.array([[likes_7d, FEATURES["log_downloads"]]]))[0],
    }
    return tuple(values.get(c) for c in CATALOG_COLUMNS)


async def _build(pool: asyncpg.Pool, *records: tuple[object, ...]) -> None:
    """A scorer batch of these catalog rows (no daily rows)."""
    await write_batch(pool, list(records), [], feature_sets=[SET])


async def _rows(pool: asyncpg.Pool) -> dict[str, asyncpg.Record]:
    rows = await pool.fetch("SELECT model_id, updated_at, downloads FROM catalog_models WHERE model_id LIKE 'org/%'")
    return {r["model_id"]: r for r in rows}


async def test_the_swap_moves_updated_at_only_for_changed_rows_and_keeps_the_latest_day(database_url: str) -> None:
    await db.migrate(database_url, MIGRATIONS, VERSION_TABLE)
    pool = await db.create_pool(database_url, min_size=1, max_size=1)
    day = dt.date(2025, 1, 8)
    try:
        await _build(pool, _record("org/a", day, 10, 1.0), _record("org/b", day, 20, 2.0))
        assert await swap_day(pool, day)
        first = await _rows(pool)
        await asyncio.sleep(0.01)
        # a redelivered batch changes nothing: the day is not due again
        await _build(pool, _record("org/a", day, 10, 1.0), _record("org/b", day, 20, 2.0))
        assert day not in [d for d, _ in await due_days(pool, 0.0)]
        # one changed row: the next swap moves updated_at (the live feed's clock) of that row only
        await _build(pool, _record("org/a", day, 10, 1.0), _record("org/b", day, 21, 2.0))
        assert day in [d for d, _ in await due_days(pool, 0.0)]
        assert await swap_day(pool, day)
        again = await _rows(pool)
        assert again["org/a"]["updated_at"] == first["org/a"]["updated_at"]
        assert again["org/b"]["updated_at"] > first["org/b"]["updated_at"]  # its downloads changed
        assert again["org/b"]["downloads"] == 21
        # a late, older day changes neither table
        await _build(pool, _record("org/a", day - dt.timedelta(days=1), 99, 9.0))
        assert await swap_day(pool, day - dt.timedelta(days=1))
        row = await pool.fetchrow("SELECT downloads, likes_7d FROM catalog_models WHERE model_id = 'org/a'")
        assert (row["downloads"], row["likes_7d"], (await _features(pool, "org/a"))["likes_7d"]) == (10, 1.0, 1.0)
        # the next day rewrites both
        await _build(pool, _record("org/a", day + dt.timedelta(days=1), 12, 3.0))
        assert await swap_day(pool, day + dt.timedelta(days=1))
        row = await pool.fetchrow(
            f"SELECT m.downloads, m.likes_7d, d.snapshot_date {_WITH_DETAILS} WHERE m.model_id = 'org/a'"
        )
        assert (row["downloads"], row["likes_7d"], (await _features(pool, "org/a"))["likes_7d"]) == (12, 3.0, 3.0)
        assert row["snapshot_date"] == day + dt.timedelta(days=1)
        assert (await _rows(pool))["org/b"]["downloads"] == 21  # absent that day: kept
    finally:
        await pool.close()


async def test_a_model_gone_from_the_hub_keeps_its_details_when_its_build_day_is_dropped(database_url: str) -> None:
    """Details are read from the build row of the catalog's day; a partition older than KEEP_BUILD_DAYS goes, and
    the rows in it that are still live (their model absent since) keep their details in catalog_details."""
    await db.migrate(database_url, MIGRATIONS, VERSION_TABLE)
    pool = await db.create_pool(database_url, min_size=1, max_size=2)
    first = dt.date(2025, 6, 1)
    try:
        await _build(pool, _record("gone/a", first, 5, 7.0), _record("gone/b", first, 5, 1.0))
        assert await swap_day(pool, first)
        assert await pool.fetchval("SELECT count(*) FROM catalog_details WHERE model_id LIKE 'gone/%'") == 0
        for n in range(1, KEEP_BUILD_DAYS + 2):  # gone/a is not on the Hub any more; gone/b is, every day
            day = first + dt.timedelta(days=n)
            await _build(pool, _record("gone/b", day, 5 + n, 1.0 + n))
            assert await swap_day(pool, day)
        assert await pool.fetchval("SELECT to_regclass($1)", build_partition(first)) is None
        kept = await pool.fetch("SELECT model_id, snapshot_date FROM catalog_details WHERE model_id LIKE 'gone/%'")
        assert [(r["model_id"], r["snapshot_date"]) for r in kept] == [("gone/a", first)]
        assert await _features(pool, "gone/a") == {**FEATURES, "likes_7d": 7.0}  # still on its page
        assert await _features(pool, "gone/b") == {**FEATURES, "likes_7d": 1.0 + KEEP_BUILD_DAYS + 1}
    finally:
        await pool.close()


async def test_the_tops_are_explained_beside_the_vacuum_not_after_it(database_url: str, monkeypatch) -> None:
    """The swap's VACUUM and its `prepare` run on two connections at once: here the VACUUM waits for a lock that
    only `prepare` lets go, which one after the other would never do."""
    await db.migrate(database_url, MIGRATIONS, VERSION_TABLE)
    pool = await db.create_pool(database_url, min_size=1, max_size=2)
    holder = await asyncpg.connect(database_url)
    day = dt.date(2025, 7, 1)
    build_indexes = catalog_swap._build_indexes

    async def built_then_held(*args: Any) -> None:
        await build_indexes(*args)
        await holder.execute("BEGIN")
        await holder.execute(f"LOCK TABLE {NEXT} IN SHARE UPDATE EXCLUSIVE MODE")  # what VACUUM takes

    vacuumed_before: list[int] = []

    async def prepare(conn: asyncpg.Connection, table: str) -> None:
        vacuumed_before.append(await conn.fetchval("SELECT relallvisible FROM pg_class WHERE relname = $1", table))
        await holder.execute("COMMIT")

    monkeypatch.setattr(catalog_swap, "_build_indexes", built_then_held)
    try:
        await _build(pool, _record("beside/a", day, 1, 0.0))
        assert await asyncio.wait_for(swap_day(pool, day, prepare), 30)
        assert vacuumed_before == [0]  # explained while the new table was not yet vacuumed
        assert await pool.fetchval("SELECT relallvisible FROM pg_class WHERE relname = $1", LIVE) > 0
    finally:
        await holder.close()
        await pool.close()


async def test_days_due_together_are_taken_in_by_one_build_as_they_would_be_one_by_one(database_url: str) -> None:
    """A backfill (or days completing together) used to rebuild the whole catalog once per day, oldest first."""
    await db.migrate(database_url, MIGRATIONS, VERSION_TABLE)
    pool = await db.create_pool(database_url, min_size=1, max_size=1)
    day = dt.date(2025, 2, 1)
    later, latest = day + dt.timedelta(days=1), day + dt.timedelta(days=2)
    try:
        await _build(pool, _record("fill/a", day, 1, 0.0), _record("fill/c", day, 1, 0.0))
        assert await swap_day(pool, day)
        # two days land before the swapper looks: one has a and b, the next a again; c is in neither
        await _build(pool, _record("fill/a", later, 2, 0.0), _record("fill/b", later, 2, 0.0))
        await _build(pool, _record("fill/a", latest, 3, 0.0))
        before = {r["model_id"]: r for r in await pool.fetch("SELECT * FROM catalog_models WHERE model_id = 'fill/c'")}
        builds: list[str] = []

        async def prepare(conn: asyncpg.Connection, table: str) -> None:  # runs once per build, before its swap
            builds.append(table)

        assert await swap_due_days(pool, 0.0, prepare) == [later, latest]
        assert len(builds) == 1
        rows = await pool.fetch(
            "SELECT model_id, snapshot_date, downloads, updated_at FROM catalog_models"
            " WHERE model_id LIKE 'fill/%' ORDER BY 1"
        )
        assert [(r["model_id"], r["snapshot_date"], r["downloads"]) for r in rows] == [
            ("fill/a", latest, 3),
            ("fill/b", later, 2),
            ("fill/c", day, 1),
        ]
        assert rows[2]["updated_at"] == before["fill/c"]["updated_at"]  # untouched by either day
        assert await due_days(pool, 0.0) == []  # both marked swapped
        # a late batch of the older day stays behind the newer row, as a single day's swap keeps it
        await _build(pool, _record("fill/a", later, 9, 0.0))
        assert await swap_due_days(pool, 0.0) == [later]
        assert await pool.fetchval("SELECT downloads FROM catalog_models WHERE model_id = 'fill/a'") == 3
    finally:
        await pool.close()


@pytest.mark.parametrize("days", [1, 2])
async def test_the_fill_reads_the_live_catalog_and_the_build_rows_once(database_url: str, days: int) -> None:
    """One full outer join: the fill used to read (and hash) each side twice, once per outer join, and to run the
    several days' DISTINCT ON twice."""
    await db.migrate(database_url, MIGRATIONS, VERSION_TABLE)
    dates = [dt.date(2025, 3, 1) + dt.timedelta(days=n) for n in range(days)]
    pool = await db.create_pool(database_url, min_size=1, max_size=1)
    try:
        for day in dates:  # the days' build partitions
            await _build(pool, _record("plan/a", day, 1, 0.0))
    finally:
        await pool.close()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {NEXT} (LIKE {LIVE} INCLUDING DEFAULTS)")
        fill = _FILL_DAY if days == 1 else _FILL_DAYS
        plan = json.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {fill}", dates, 0, 2))

        def scans(node: dict[str, Any]) -> list[str]:
            own = [node["Relation Name"]] if "Scan" in node["Node Type"] and "Relation Name" in node else []
            return own + [name for child in node.get("Plans", []) for name in scans(child)]

        read = scans(plan[0]["Plan"])
        assert read.count(LIVE) == 1
        assert len([name for name in read if name.startswith("catalog_build")]) == days  # each day's partition once
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {NEXT}")
        await conn.close()


async def _shape(conn: asyncpg.Connection) -> tuple[object, ...]:
    indexes = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'catalog_models' ORDER BY 1"
    )
    options = await conn.fetchval("SELECT reloptions FROM pg_class WHERE oid = 'catalog_models'::regclass")
    primary = await conn.fetchval(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'catalog_models'::regclass AND contype = 'p'"
    )
    return [tuple(r) for r in indexes], options, primary


async def test_search_reads_yesterdays_catalog_until_the_complete_day_is_swapped_in(database_url: str) -> None:
    await db.migrate(database_url, MIGRATIONS, VERSION_TABLE)
    pool = await db.create_pool(database_url, min_size=1, max_size=3)
    day = dt.date(2025, 3, 1)
    try:
        async with pool.acquire() as conn:
            shape = await _shape(conn)
            assert len(shape[0]) >= 15
            assert shape[2] == "catalog_models_pkey"
        await _build(pool, _record("swap/a", day, 1, 0.0), _record("swap/b", day, 1, 0.0))
        assert await swap_day(pool, day)
        # the next day arrives in two batches; the features close said it has 2 models
        await write_batch(
            pool,
            [_record("swap/a", day + dt.timedelta(days=1), 5, 0.0)],
            [],
            {day + dt.timedelta(days=1): 2},
            feature_sets=[SET],
        )
        assert day + dt.timedelta(days=1) not in [d for d, _ in await due_days(pool, 3600.0)]
        # a reader's connection with the search statement prepared before the swap (as the gateway's pool has)
        search = "SELECT downloads FROM catalog_models WHERE model_id LIKE 'swap/%' ORDER BY model_id"
        reader = await asyncpg.connect(database_url)
        assert [r["downloads"] for r in await reader.fetch(search)] == [1, 1]
        await write_batch(
            pool,
            [_record("swap/b", day + dt.timedelta(days=1), 6, 0.0)],
            [],
            {day + dt.timedelta(days=1): 2},
            feature_sets=[SET],
        )
        assert [d for d, _ in await due_days(pool, 3600.0)] == [day + dt.timedelta(days=1)]
        assert await swap_due_days(pool, 3600.0) == [day + dt.timedelta(days=1)]
        rows = await pool.fetch(
            "SELECT model_id, downloads FROM catalog_models WHERE model_id LIKE 'swap/%' ORDER BY 1"
        )
        assert [tuple(r) for r in rows] == [("swap/a", 5), ("swap/b", 6)]
        try:  # the same prepared statement now reads the new table (PostgreSQL re-plans it by name)
            assert [r["downloads"] for r in await reader.fetch(search)] == [5, 6]
        finally:
            await reader.close()
        async with pool.acquire() as conn:
            assert await _shape(conn) == shape  # same indexes, options and primary key as the table it replaced
            visible, pages, tuples = await conn.fetchrow(
                "SELECT relallvisible, relpages, reltuples FROM pg_class WHERE oid = 'catalog_models'::regclass"
            )
            assert tuples > 0  # analysed
            assert visible == pages  # vacuumed before the swap: index-only walks never visit the heap
        assert await swap_due_days(pool, 3600.0) == []
    finally:
        await pool.close()


async def test_scores_keep_the_explanation_as_the_json_text_written(database_url: str) -> None:
    await db.migrate(database_url, MIGRATIONS, VERSION_TABLE)
    conn = await asyncpg.connect(database_url)
    column = "SELECT data_type FROM information_schema.columns WHERE table_name = $1 AND column_name = 'top_features'"
    try:
        assert await conn.fetchval(column, "scores_archive") == "text"
        await conn.execute(
            "INSERT INTO scores_archive (snapshot_date, model_id, model_version, label, horizon_days, probability,"
            " threshold, top_features) VALUES ('2025-01-08', 'org/a', 'v1', 'trending', 7, 0.5, 0.4, $1)",
            json.dumps(EXPLANATION),
        )
        await _move(database_url, "downgrade", "0011_catalog_build")
        assert await conn.fetchval(column, "scores") == "jsonb"
        assert json.loads(await conn.fetchval("SELECT top_features::text FROM scores")) == EXPLANATION
    finally:
        await conn.close()


async def test_a_rename_waits_for_a_running_swap_and_moves_the_days_build_rows(database_url: str) -> None:
    await db.migrate(database_url, MIGRATIONS, VERSION_TABLE)
    pool = await db.create_pool(database_url, min_size=1, max_size=2)
    day = dt.date(2025, 4, 1)
    swap = await asyncpg.connect(database_url)
    try:
        await _build(pool, _record("ren/old", day, 1, 0.0))
        await swap.execute(f"SELECT pg_advisory_lock({SWAP_LOCK})")  # a swap between its fill and its rename
        rename = Rename("ren/old", "ren/new", day + dt.timedelta(days=1))
        following = asyncio.create_task(follow_renames(pool, [rename], ["ren/new"]))
        await asyncio.sleep(0.5)
        assert not following.done()  # its re-key of catalog_models would be lost with the swapped-out table
        await swap.execute(f"SELECT pg_advisory_unlock({SWAP_LOCK})")
        await asyncio.wait_for(following, 30)
        rows = await pool.fetch("SELECT model_id FROM catalog_build WHERE model_id LIKE 'ren/%'")
        assert [r["model_id"] for r in rows] == ["ren/new"]
    finally:
        await swap.close()
        await pool.close()


async def test_a_batch_updates_its_days_count_last_so_other_replicas_do_not_queue_behind_its_writes(
    database_url: str,
) -> None:
    """Every batch of a day updates the day's one `catalog_days` row, locked until its commit: a batch that waits
    for that row (another replica's batch holds it) has already written its build and daily rows."""
    await db.migrate(database_url, MIGRATIONS, VERSION_TABLE)
    pool = await db.create_pool(database_url, min_size=1, max_size=1)
    day = dt.date(2025, 5, 1)
    other, probe = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        await _build(pool, _record("count/a", day, 1, 0.0))
        other_batch = other.transaction()
        await other_batch.start()
        await other.execute("SELECT FROM catalog_days WHERE snapshot_date = $1 FOR UPDATE", day)
        writing = asyncio.create_task(_build(pool, _record("count/a", day, 2, 1.0)))
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%catalog_days%'"
        for _ in range(200):
            if await probe.fetchval(waiting):
                break
            await asyncio.sleep(0.05)
        assert await probe.fetchval(waiting) == 1
        with pytest.raises(asyncpg.LockNotAvailableError):  # its build row is written (locked) already
            await probe.execute(
                "SELECT FROM catalog_build WHERE snapshot_date = $1 AND model_id = 'count/a' FOR UPDATE NOWAIT", day
            )
        await other_batch.rollback()
        await asyncio.wait_for(writing, 30)
        assert await swap_day(pool, day)
        assert await _features(pool, "count/a") == {**FEATURES, "likes_7d": 1.0}
    finally:
        await other.close()
        await probe.close()
        await pool.close()


async def _facet_leads(conn: asyncpg.Connection) -> dict[str, str]:
    """The type of the first key column of each per-task and per-library keyset index of catalog_models."""
    rows = await conn.fetch(
        "SELECT i.relname, format_type(a.atttypid, a.atttypmod) AS lead FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_attribute a ON a.attrelid = i.oid AND a.attnum = 1 "
        "WHERE x.indrelid = 'catalog_models'::regclass AND i.relname ~ '_(task|library)_key_'"
    )
    return {r["relname"]: r["lead"] for r in rows}


async def test_the_task_and_library_keyset_indexes_lead_with_an_integer_in_every_swapped_in_catalog(
    database_url: str,
) -> None:
    """Their daily build sorts the catalog on (facet, key, id) with most rows tied on the facet: an integer first
    column (the facet's hash) makes those comparisons integer ones. 0015 builds them so, the swap copies them."""
    await db.migrate(database_url, MIGRATIONS, VERSION_TABLE)
    conn = await asyncpg.connect(database_url)
    pool = await db.create_pool(database_url, min_size=1, max_size=2)
    day = dt.date(2025, 4, 1)
    try:
        leads = await _facet_leads(conn)
        assert len(leads) == 10
        assert set(leads.values()) == {"integer"}
        await _build(pool, _record("lead/a", day, 1, 0.0))
        assert await swap_day(pool, day)
        assert await _facet_leads(conn) == leads
        await _move(database_url, "downgrade", "0014_feature_vectors")
        assert set((await _facet_leads(conn)).values()) == {"text"}
        await _move(database_url, "upgrade", "0015_facet_keys")
        assert await _facet_leads(conn) == leads
    finally:
        await pool.close()
        await conn.close()


async def _indexes_of(conn: asyncpg.Connection, table: str) -> set[str]:
    rows = await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = $1", table)
    return {r["indexname"] for r in rows}


async def test_0016_leaves_scores_its_primary_key(database_url: str) -> None:
    await db.migrate(database_url, MIGRATIONS, VERSION_TABLE)
    conn = await asyncpg.connect(database_url)
    try:
        await _move(database_url, "downgrade", "0016_scores_primary_key_only")
        assert await _indexes_of(conn, "scores") == {"scores_pkey"}
        await _move(database_url, "downgrade", "0015_facet_keys")
        assert await _indexes_of(conn, "scores") == {"scores_pkey", "scores_model"}
        await _move(database_url, "upgrade", "0016_scores_primary_key_only")
        assert await _indexes_of(conn, "scores") == {"scores_pkey"}
    finally:
        await conn.close()


async def test_0018_archives_the_scores_written_and_a_batch_writes_none_there(database_url: str) -> None:
    await db.migrate(database_url, MIGRATIONS, VERSION_TABLE)
    await _move(database_url, "downgrade", "0017_details_in_build")
    conn = await asyncpg.connect(database_url)
    pool = await db.create_pool(database_url, min_size=1, max_size=2)
    try:
        await conn.execute(
            "INSERT INTO scores (snapshot_date, model_id, model_version, label, horizon_days, probability, threshold)"
            " VALUES ('2025-01-08', 'archived/a', 'v1', 'trending', 7, 0.5, 0.4)"
        )
        await _move(database_url, "upgrade", "0018_scores_archived")
        assert await conn.fetchval("SELECT to_regclass('scores')") is None
        assert await _indexes_of(conn, "scores_archive") == {"scores_archive_pkey"}
        assert await conn.fetchval("SELECT obj_description('scores_archive'::regclass)")
        day = dt.date(2025, 1, 9)
        await write_batch(pool, [_record("archived/a", day, 3, 0.0)], [], feature_sets=[SET])
        # the archive keeps what it held; a rename no longer moves it
        rows = await conn.fetch("SELECT model_id, snapshot_date FROM scores_archive")
        assert [(r["model_id"], r["snapshot_date"]) for r in rows] == [("archived/a", dt.date(2025, 1, 8))]
        assert "scores_archive" not in {keyed.table for keyed in _RENAMED_TABLES}
        await _move(database_url, "downgrade", "0017_details_in_build")
        assert await conn.fetchval("SELECT count(*) FROM scores") == 1
        await _move(database_url, "upgrade", "0018_scores_archived")
    finally:
        await pool.close()
        await conn.close()


async def test_0019_keys_the_daily_rows_by_day_and_back(database_url: str) -> None:
    await db.migrate(database_url, MIGRATIONS, VERSION_TABLE)
    conn = await asyncpg.connect(database_url)

    async def key() -> str:
        definition: str = await conn.fetchval("SELECT pg_get_indexdef('catalog_daily_pkey'::regclass)")
        return definition.split("(", 1)[1].rstrip(")")

    try:
        assert await key() == "snapshot_date, model_id"
        # the scorer's upsert names the key's columns in the old order: the new key still arbitrates it
        await conn.execute(
            "INSERT INTO catalog_daily (model_id, snapshot_date, downloads, likes)"
            " VALUES ('keyed/a', '2025-01-08', 1, 0) ON CONFLICT (model_id, snapshot_date) DO NOTHING"
        )
        await _move(database_url, "downgrade", "0018_scores_archived")
        assert await key() == "model_id, snapshot_date"
        await _move(database_url, "upgrade", "0019_daily_by_day")
        assert await key() == "snapshot_date, model_id"
        assert await _indexes_of(conn, "catalog_daily") == {"catalog_daily_pkey"}
        assert await conn.fetchval("SELECT count(*) FROM catalog_daily WHERE model_id = 'keyed/a'") == 1
    finally:
        await conn.close()


async def _facet_predicates(conn: asyncpg.Connection) -> dict[str, str | None]:
    rows = await conn.fetch(
        "SELECT i.relname, pg_get_expr(x.indpred, x.indrelid) AS predicate FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = 'catalog_models'::regclass AND i.relname ~ '_(task|library)_key_'"
    )
    return {r["relname"]: r["predicate"] for r in rows}


async def _statistics(conn: asyncpg.Connection) -> list[str]:
    """The catalog's statistics objects (the planner's estimates of a facet's share): name and expressions."""
    rows = await conn.fetch(
        "SELECT stxname, pg_get_statisticsobjdef_expressions(oid) AS e FROM pg_statistic_ext "
        "WHERE stxrelid = 'catalog_models'::regclass"
    )
    return sorted(f"{r['stxname']} on {', '.join(r['e'])}" for r in rows)


@pytest.mark.parametrize("facet", ["task", "library"])
async def test_the_facet_keyset_indexes_leave_out_rows_without_the_facet_and_serve_its_walks(
    database_url: str, facet: str
) -> None:
    """0020: a walk narrowed to a task (a library) names one, so rows without any are not in those indexes; the
    swap copies the predicate and the hashes' statistics (partial indexes give the planner none), the planner can walk
    them for the gateway's condition, and 0020 goes back and forth."""
    await db.migrate(database_url, MIGRATIONS, VERSION_TABLE)
    conn = await asyncpg.connect(database_url)
    pool = await db.create_pool(database_url, min_size=1, max_size=2)
    day = dt.date(2025, 4, 1)
    column = {"task": "pipeline_tag", "library": "library_name"}[facet]
    try:
        expected = {
            name: f"({'pipeline_tag' if '_task_' in name else 'library_name'} IS NOT NULL)"
            for name in await _facet_predicates(conn)
        }
        assert len(expected) == 10
        assert await _facet_predicates(conn) == expected
        await _build(pool, _record("facet/a", day, 1, 0.0))
        hashes = [
            "catalog_models_library_hash on hashtext(library_name)",
            "catalog_models_task_hash on hashtext(pipeline_tag)",
        ]
        assert await _statistics(conn) == hashes
        assert await swap_day(pool, day)
        assert await _facet_predicates(conn) == expected
        assert await _statistics(conn) == hashes
        await conn.execute(f"UPDATE catalog_models SET {column} = 'x'")  # noqa: S608 (a constant of the test)
        # the gateway's walk narrowed to the facet (hubpulse_gateway.catalog.repository.walk_sql): index-only on the
        # facet's index, whichever plan the planner would rather take on a one-row table
        query = SearchQuery(
            terms=(),
            task="x" if facet == "task" else None,
            library="x" if facet == "library" else None,
            min_downloads=None,
            max_downloads=None,
            min_likes=None,
            sort=SortKey.downloads,
            cursor=None,
            limit=20,
        )
        sql, args = walk_sql(query, 100, by_library=facet == "library")
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")
            await conn.execute("SET LOCAL enable_sort = off")
            plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {sql}", *args))
        assert f"Index Only Scan using catalog_models_{facet}_key_downloads" in plan
        assert [r["model_id"] for r in await conn.fetch(sql, *args)] == ["facet/a"]
        await _move(database_url, "downgrade", "0019_daily_by_day")
        assert set((await _facet_predicates(conn)).values()) == {None}
        assert await _statistics(conn) == []
        await _move(database_url, "upgrade", "0020_facet_keys_partial")
        assert await _facet_predicates(conn) == expected
        assert await _statistics(conn) == hashes
    finally:
        await pool.close()
        await conn.close()
