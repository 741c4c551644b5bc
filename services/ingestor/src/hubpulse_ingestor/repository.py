"""PostgreSQL I/O of the ingestor: day partitions, the snapshot upsert (COPY into staging, then one upsert),
and the cycle log with its checkpointed cursor."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from typing import Any

import asyncpg
import pandas as pd

from hubpulse_common.history import HISTORY_COLUMNS, history_from_columns
from hubpulse_ingestor.snapshots import COLUMNS, EncodedSnapshots, SnapshotRow

_UPDATED = [c for c in COLUMNS if c not in ("snapshot_date", "model_id")]
# Query text is built from this module's constant column names only, never from input.
_UPSERT = f"""
    INSERT INTO snapshots ({", ".join(COLUMNS)})
    SELECT {", ".join(COLUMNS)} FROM snapshots_staging
    ON CONFLICT (snapshot_date, model_id) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in _UPDATED)}, ingested_at = now()
"""  # noqa: S608
# The bulk path: the batch's event JSON as one array parameter, expanded by PostgreSQL's own JSON parser.
_JSON_TYPES = {
    "snapshot_date": "date",
    "model_id": "text",
    "downloads": "bigint",
    "downloads_all_time": "bigint",
    "likes": "integer",
    "trending_score": "double precision",
    "trending_rank": "integer",
    "pipeline_tag": "text",
    "library_name": "text",
    "author": "text",
    "tags": "text[]",
    "created_at": "timestamptz",
    "last_modified": "timestamptz",
    "source": "text",
}
_UPSERT_JSON = f"""
    INSERT INTO snapshots ({", ".join(COLUMNS)})
    SELECT {", ".join("COALESCE(tags, '{}')" if c == "tags" else c for c in COLUMNS)}
    FROM json_to_recordset($1::text::json) AS t({", ".join(f"{c} {_JSON_TYPES[c]}" for c in COLUMNS)})
    ON CONFLICT (snapshot_date, model_id) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in _UPDATED)}, ingested_at = now()
"""  # noqa: S608
_CYCLE_COLUMNS = (
    "cycle_id, source, status, snapshot_date, next_url, pages, models, retries, resumes, failed_pages, error,"
    " started_at, updated_at, finished_at"
)


def partition_name(day: dt.date) -> str:
    return f"snapshots_{day:%Y%m%d}"


async def ensure_partition(conn: asyncpg.Connection, day: dt.date) -> None:
    # Concurrent writers may race on the same new day; the advisory lock makes creation one at a time.
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('hubpulse-snapshot-partitions'))")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF snapshots "
            f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + dt.timedelta(days=1)).isoformat()}')"
        )


async def upsert_snapshots(pool: asyncpg.Pool, rows: Sequence[SnapshotRow]) -> None:
    """Idempotent on (snapshot_date, model_id): a re-run or a resumed cycle overwrites, never duplicates."""
    if not rows:
        return
    async with pool.acquire() as conn:
        for day in sorted({r.snapshot_date for r in rows}):
            await ensure_partition(conn, day)
        async with conn.transaction():
            await conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS snapshots_staging "
                "(LIKE snapshots INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            await conn.copy_records_to_table("snapshots_staging", records=rows, columns=COLUMNS)
            await conn.execute(_UPSERT)


async def upsert_encoded(pool: asyncpg.Pool, batch: EncodedSnapshots, parallel: int = 2) -> None:
    """`upsert_snapshots` for encoded events: the batch travels as JSON arrays, each upserted in one statement
    (PostgreSQL parses them in C; the ingestor does no per-row COPY encoding), in `parallel` slices on as many
    connections at once (the upsert is PostgreSQL-CPU-bound; slices use its other cores). Same idempotence:
    the caller checkpoints only after every slice committed."""
    if not batch.values:
        return
    async with pool.acquire() as conn:
        for day in sorted(batch.days):
            await ensure_partition(conn, day)
    step = -(-len(batch.values) // max(1, parallel))

    async def upsert(values: list[bytes]) -> None:
        payload = (b"[" + b",".join(values) + b"]").decode()
        async with pool.acquire() as conn:
            await conn.execute(_UPSERT_JSON, payload)

    await asyncio.gather(*(upsert(batch.values[i : i + step]) for i in range(0, len(batch.values), step)))


async def count_snapshots(pool: asyncpg.Pool, day: dt.date) -> tuple[int, int]:
    """(rows, distinct models) of one day."""
    row = await pool.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT model_id) AS m FROM snapshots WHERE snapshot_date = $1", day
    )
    assert row is not None
    return int(row["n"]), int(row["m"])


# ---- cycles -------------------------------------------------------------------------------------


async def running_cycle(pool: asyncpg.Pool, source: str) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        f"SELECT {_CYCLE_COLUMNS} FROM ingest_cycles WHERE source = $1 AND status = 'running'",  # noqa: S608
        source,
    )
    return dict(row) if row is not None else None


async def start_cycle(pool: asyncpg.Pool, source: str, first_url: str) -> dict[str, Any]:
    row = await pool.fetchrow(
        f"INSERT INTO ingest_cycles (source, next_url) VALUES ($1, $2) RETURNING {_CYCLE_COLUMNS}",  # noqa: S608
        source,
        first_url,
    )
    assert row is not None
    return dict(row)


async def mark_resumed(pool: asyncpg.Pool, cycle_id: int) -> None:
    await pool.execute(
        "UPDATE ingest_cycles SET resumes = resumes + 1, updated_at = now() WHERE cycle_id = $1", cycle_id
    )


async def checkpoint(
    pool: asyncpg.Pool,
    cycle_id: int,
    *,
    snapshot_date: dt.date | None,
    next_url: str | None,
    pages: int,
    models: int,
    retries: int,
    failed_pages: list[dict[str, Any]],
) -> None:
    """Record what is durable (rows written and events acknowledged): a restart resumes from `next_url`."""
    await pool.execute(
        """
        UPDATE ingest_cycles SET snapshot_date = COALESCE(snapshot_date, $2), next_url = $3,
            pages = pages + $4, models = models + $5, retries = retries + $6,
            failed_pages = failed_pages || $7::jsonb, updated_at = now()
        WHERE cycle_id = $1
        """,
        cycle_id,
        snapshot_date,
        next_url,
        pages,
        models,
        retries,
        failed_pages,
    )


async def finish_cycle(pool: asyncpg.Pool, cycle_id: int, status: str, error: str | None = None) -> None:
    await pool.execute(
        "UPDATE ingest_cycles SET status = $2, error = $3, next_url = NULL, finished_at = now(), updated_at = now()"
        " WHERE cycle_id = $1",
        cycle_id,
        status,
        error,
    )


async def latest_cycle(pool: asyncpg.Pool, source: str | None = None) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        f"SELECT {_CYCLE_COLUMNS} FROM ingest_cycles WHERE ($1::text IS NULL OR source = $1)"  # noqa: S608
        " ORDER BY cycle_id DESC LIMIT 1",
        source,
    )
    return dict(row) if row is not None else None


async def last_finished(pool: asyncpg.Pool) -> list[tuple[str, dt.datetime]]:
    """When the last cycle of each status finished."""
    rows = await pool.fetch(
        "SELECT status, max(finished_at) AS at FROM ingest_cycles WHERE finished_at IS NOT NULL GROUP BY status"
    )
    return [(r["status"], r["at"]) for r in rows]


async def recent_cycles(pool: asyncpg.Pool, limit: int) -> list[dict[str, Any]]:
    query = f"SELECT {_CYCLE_COLUMNS} FROM ingest_cycles ORDER BY cycle_id DESC LIMIT $1"  # noqa: S608
    rows = await pool.fetch(query, limit)
    return [dict(r) for r in rows]


# The stored snapshots in the CONTRACT history shape. COLLATE "C" orders ids by code point, as Python does,
# so a stored history comes back in exactly the order load_history gives the same rows from a file.
_HISTORY_DAY = f"""
    SELECT {", ".join(HISTORY_COLUMNS)} FROM snapshots WHERE snapshot_date = $1 ORDER BY model_id COLLATE "C"
"""  # noqa: S608


async def stored_days(pool: asyncpg.Pool) -> list[tuple[dt.date, int]]:
    """Each stored snapshot day with its number of models, oldest first (none before the first migration)."""
    if await pool.fetchval("SELECT to_regclass('snapshots')") is None:
        return []
    rows = await pool.fetch("SELECT snapshot_date, count(*) AS n FROM snapshots GROUP BY 1 ORDER BY 1")
    return [(r["snapshot_date"], int(r["n"])) for r in rows]


async def read_history_day(pool: asyncpg.Pool, day: dt.date) -> pd.DataFrame:
    """One stored day as a typed history frame (hubpulse_common.history's shape and order)."""
    rows = await pool.fetch(_HISTORY_DAY, day)
    return history_from_columns({c: [r[c] for r in rows] for c in HISTORY_COLUMNS})
