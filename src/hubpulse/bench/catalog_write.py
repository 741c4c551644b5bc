"""`hubpulse bench catalog`: what one day's update of the catalog read model costs PostgreSQL.

Starts an embedded PostgreSQL, seeds an N-model catalog (`seed_catalog`: COPY, indexes built after, VACUUM
ANALYZE: the state after a quiet night), then writes the next day of the same synthetic Hub through the
scorer's real `write_batch`, `batch` models per transaction as the scorer's consumer does: first the catalog
rows alone and the day's swap (the part this benchmark is about), then the day's daily rows, then
the same catalog batches again (a redelivery). Reports seconds, the table and index sizes before and after,
and how many row updates were HOT (no index entries written).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import asyncpg

from hubpulse.bench.catalog_seed import scored_chunks, seed_catalog
from hubpulse.bench.configs import CatalogBenchConfig
from hubpulse.platform.stores import create_database, free_port, postgres_spec, spawn, terminate, wait_port
from hubpulse_common import db
from hubpulse_common.errors import ConfigError
from hubpulse_common.feature_vectors import FeatureSet
from hubpulse_common.synthetic import SyntheticHub
from hubpulse_scorer.catalog_swap import swap_day
from hubpulse_scorer.repository import write_batch
from hubpulse_scorer.service import CATALOG_COLUMNS, Record, Scored, catalog_records

CATALOG_TABLES = ("catalog_models", "catalog_details")


async def sizes(conn: asyncpg.Connection) -> dict[str, Any]:
    """MB of each catalog table (heap + TOAST) and of each of its indexes; row update counts."""
    await conn.execute("SELECT pg_stat_force_next_flush()")
    rows = await conn.fetch(
        "SELECT c.relname AS table, pg_table_size(c.oid) AS heap, s.n_tup_upd, s.n_tup_hot_upd, s.n_dead_tup, "
        "(SELECT json_object_agg(i.relname, pg_relation_size(i.oid)) FROM pg_index x "
        " JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = c.oid) AS indexes "
        "FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.relname = ANY($1::text[])",
        list(CATALOG_TABLES),
    )
    mb = 2**20
    out: dict[str, Any] = {}
    for r in rows:
        indexes = {name: round(size / mb, 1) for name, size in sorted(asyncpg_json(r["indexes"]).items())}
        out[r["table"]] = {
            "heap_mb": round(r["heap"] / mb, 1),
            "index_mb": round(sum(indexes.values()), 1),
            "indexes": len(indexes),
            "updates": r["n_tup_upd"],
            "hot_updates": r["n_tup_hot_upd"],
            "dead_rows": r["n_dead_tup"],
            "index_mb_each": indexes,
        }
    return out


def asyncpg_json(value: Any) -> dict[str, int]:
    """json_object_agg arrives as text on a bare connection (no codec): parse it, or {} for no indexes."""
    return json.loads(value) if isinstance(value, str) else dict(value or {})


async def next_day(conn: asyncpg.Connection, models: int, seed: int) -> tuple[Iterator[Scored], int]:
    """The day after the catalog's latest one, of the same synthetic Hub (the seed is day 7 of 8)."""
    latest: dt.date = await conn.fetchval("SELECT max(snapshot_date) FROM catalog_models")
    day = (latest - SyntheticHub(1, 1).start_date).days + 1
    hub = SyntheticHub(models, day + 1, seed=seed)
    cols = hub.day_columns(day)
    return scored_chunks(cols, hub.day_columns(day - 7), 0.01, seed), len(cols)


def batches(chunks: Iterator[Scored], batch: int) -> Iterator[Scored]:
    """The day cut into the scorer's batches."""
    for big in chunks:
        for lo in range(0, len(big.rows), batch):
            yield Scored(
                big.rows.take(slice(lo, lo + batch)),
                big.version,
                big.label,
                big.horizon_days,
                big.threshold,
                big.probability[lo : lo + batch],
                big.explanations[lo : lo + batch],
            )


async def update_catalog(url: str, models: int, seed: int, batch: int = 5000) -> dict[str, Any]:
    """Write the next day's catalog rows through the scorer's `write_batch`, then swap the day in as the scorer
    does (`catalog_swap.swap_day`); seconds of the writes and of the swap."""
    conn = await asyncpg.connect(url)
    try:
        chunks, _ = await next_day(conn, models, seed)
    finally:
        await conn.close()
    parts = list(batches(chunks, batch))
    records = [catalog_records(part)[0] for part in parts]
    sets = {part.rows.feature_set for part in parts}
    pool = await db.create_pool(url, min_size=1, max_size=2)
    try:
        seconds = await _timed(pool, [(c, []) for c in records], sets)
        swap_s = await _swap(pool, records)
    finally:
        await pool.close()
    return {"rows": sum(len(c) for c in records), "seconds": seconds, "swap_s": swap_s}


async def _swap(pool: asyncpg.Pool, records: list[list[Record]]) -> float:
    start = time.perf_counter()
    for day in sorted({r[CATALOG_COLUMNS.index("snapshot_date")] for c in records for r in c}):
        await swap_day(pool, day)
    return round(time.perf_counter() - start, 2)


async def _timed(
    pool: asyncpg.Pool, work: list[tuple[list[Record], list[Record]]], sets: Iterable[FeatureSet]
) -> float:
    start = time.perf_counter()
    for catalog, daily in work:
        await write_batch(pool, catalog, daily, feature_sets=sets)
    seconds = round(time.perf_counter() - start, 2)
    # A backend reports its table statistics at most once a second: have the writer's last batch counted.
    await pool.execute("SELECT pg_stat_force_next_flush()")
    return seconds


async def _bench(url: str, models: int, batch: int, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    report = await seed_catalog(url, models, history_days=1, seed=seed)
    seed_s = time.perf_counter() - started
    catalog: list[list[Record]] = []
    daily: list[list[Record]] = []
    conn = await asyncpg.connect(url)
    pool = await db.create_pool(url, min_size=1, max_size=2)
    try:
        chunks, day_models = await next_day(conn, models, seed)
        sets: set[FeatureSet] = set()
        for part in batches(chunks, batch):
            sets.add(part.rows.feature_set)
            models_rows, daily_rows = catalog_records(part)
            catalog.append(models_rows)
            daily.append(daily_rows)
        before = await sizes(conn)
        load = [round(x, 2) for x in os.getloadavg()]
        update_s = await _timed(pool, [(c, []) for c in catalog], sets)
        swap_s = await _swap(pool, catalog)
        after = await sizes(conn)
        daily_s = await _timed(pool, [([], d) for d in daily], sets)
        redelivery_s = await _timed(pool, [(c, []) for c in catalog], sets)
        after_redelivery = await sizes(conn)
        load_after = [round(x, 2) for x in os.getloadavg()]
    finally:
        await pool.close()
        await conn.close()
    rows = sum(len(c) for c in catalog)
    return {
        "models": report.models,
        "day_models": day_models,
        "batch": batch,
        "seed_seconds": round(seed_s, 1),
        # The headline: one day's catalog of every model, through the scorer's write_batch and swap.
        "catalog_update_s": update_s,
        "catalog_swap_s": swap_s,
        "catalog_rows_per_s": round(rows / (update_s + swap_s)),
        "daily_s": daily_s,
        "catalog_redelivery_s": redelivery_s,
        "loadavg_before": load,
        "loadavg_after": load_after,
        "cpu_count": os.cpu_count(),
        "sizes_seeded": before,
        "sizes_after_update": after,
        "sizes_after_redelivery": after_redelivery,
    }


def run_catalog_bench(config: CatalogBenchConfig) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hubpulse-bench-catalog-") as tmp:
        root = config.data_dir or Path(tmp)
        pg = postgres_spec(root, free_port())
        proc = spawn(pg, root / "logs" / "postgres.log")
        try:
            if not wait_port(pg.port, 60, proc):
                raise ConfigError(f"postgres did not start; see {root / 'logs' / 'postgres.log'}")
            admin = pg.url.rsplit("/", 1)[0] + "/postgres"
            asyncio.run(create_database(admin, "hubpulse"))
            return asyncio.run(_bench(pg.url, config.models, config.batch, config.seed))
        finally:
            terminate(proc, "postgres")
