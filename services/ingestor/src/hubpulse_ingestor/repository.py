"""PostgreSQL I/O of the ingestor: day partitions, the snapshot writes (a COPY of new rows, else an upsert),
identities, and the cycle log with its checkpointed cursor."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import asyncpg
import orjson
import pandas as pd

from hubpulse_common.history import HISTORY_COLUMNS, history_from_columns
from hubpulse_ingestor.snapshots import COLUMNS, EncodedSnapshots, SnapshotRow, rows_json

_UPDATED = [c for c in COLUMNS if c not in ("snapshot_date", "model_id")]
# Query text is built from this module's constant column names only, never from input.
_UPSERT = f"""
    INSERT INTO snapshots ({", ".join(COLUMNS)})
    SELECT {", ".join(COLUMNS)} FROM snapshots_staging
    ON CONFLICT (snapshot_date, model_id) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in _UPDATED)}, ingested_at = now()
"""  # noqa: S608
# The upsert of a batch: its rows as one JSON array parameter, expanded by PostgreSQL's own JSON parser.
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
    " started_at, updated_at, finished_at, listed, skipped, cleaned, renamed"
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


async def upsert_encoded(pool: asyncpg.Pool, batch: EncodedSnapshots, parallel: int = 2) -> list[bytes]:
    """`upsert_snapshots` for a checked batch, in `parallel` slices on as many connections at once (PostgreSQL-
    CPU-bound; slices use its other cores). Same idempotence: the caller checkpoints only after every slice
    committed.

    A slice's rows go in by one binary COPY into the day's partition: a day's models are new to it but for a
    second walk of the same day (or an import over it), and then, or whenever the COPY fails, the slice's rows
    are upserted as one JSON array instead (one statement; PostgreSQL parses the array; a redelivered batch
    overwrites). The COPY spares PostgreSQL the JSON parsing, type input and ON CONFLICT of every row
    (measured in docs/decisions/pipeline-redesign.md, session 9).

    A value PostgreSQL refuses (the row checks should leave none) fails its slice only: the slice is halved
    until the refused rows are alone, and their keys come back (stored: every other row)."""
    if not batch.rows:
        return []
    async with pool.acquire() as conn:
        for day in sorted(batch.days):
            await ensure_partition(conn, day)
    step = -(-len(batch.rows) // max(1, parallel))

    async def write(start: int) -> list[bytes]:
        keys, rows = batch.keys[start : start + step], batch.rows[start : start + step]
        try:
            async with pool.acquire() as conn:
                await conn.copy_records_to_table("snapshots", records=rows, columns=COLUMNS)
            return []
        except (asyncpg.PostgresError, ValueError, TypeError, OverflowError):
            pass  # a model the day already holds, or a value the JSON path refuses alone: that path decides
        return await upsert(keys, rows)

    async def upsert(keys: list[bytes], rows: list[SnapshotRow]) -> list[bytes]:
        try:
            async with pool.acquire() as conn:
                await conn.execute(_UPSERT_JSON, rows_json(rows))
        except asyncpg.DataError:
            if len(rows) == 1:
                return keys
            half = len(rows) // 2
            return [*await upsert(keys[:half], rows[:half]), *await upsert(keys[half:], rows[half:])]
        return []

    refused = await asyncio.gather(*(write(i) for i in range(0, len(batch.rows), step)))
    return [key for keys in refused for key in keys]


# A model listed under a new name keeps its `_id`: the old name's rows move to the new one (the day's row under
# the new name wins), the rename is recorded (chains collapsed: a -> b, b -> c makes a -> c) and the identity
# points at the new name. One statement per batch reads the batch's identities once: it writes each new `_id`
# (ingestor migration 0003: once; DO NOTHING takes no row lock) and returns the renames, which move only after
# the batch is published. A known `_id` under its known name is only read: half the CPU of a second statement
# that parsed the batch again to insert nothing (docs/decisions/pipeline-redesign.md, session 25).
_IDENTIFY = """
    WITH incoming AS (
        SELECT DISTINCT ON (hub_id) hub_id, model_id
        FROM json_to_recordset($1::text::json) AS t(hub_id text, model_id text)
    ), known AS (
        SELECT i.hub_id, i.model_id, m.model_id AS old_id FROM incoming i LEFT JOIN hub_models m USING (hub_id)
    ), added AS (
        INSERT INTO hub_models (hub_id, model_id, first_seen)
        SELECT hub_id, model_id, $2 FROM known WHERE old_id IS NULL
        ON CONFLICT (hub_id) DO NOTHING
    )
    SELECT hub_id, old_id, model_id AS new_id FROM known WHERE old_id <> model_id
"""


class IdentityMove(NamedTuple):
    """A known `_id` listed under a new name."""

    old_id: str
    new_id: str
    hub_id: str


def identities(pairs: Iterable[tuple[str, bytes]]) -> str | None:
    """(Hub `_id`, name) pairs as the JSON the identity statement takes; None without any."""
    rows = [{"hub_id": hub_id, "model_id": key.decode()} for hub_id, key in pairs]
    return orjson.dumps(rows).decode() if rows else None


async def identify(pool: asyncpg.Pool, payload: str | None, day: dt.date) -> list[IdentityMove]:
    """Remembers each new model's `_id` under its name (first seen on `day`) and returns the batch's models stored
    under another name (same `_id`). Called before the batch is published, so that each renamed model's event says
    so (`renamed_from`); the renames move after it (`record_renames`): a crash in between finds them again, since
    the one ingestor is the only writer of identities. payload: `identities` of the batch."""
    if payload is None:
        return []
    return [IdentityMove(r["old_id"], r["new_id"], r["hub_id"]) for r in await pool.fetch(_IDENTIFY, payload, day)]


async def record_renames(pool: asyncpg.Pool, day: dt.date, moves: Sequence[IdentityMove]) -> None:
    """Applies the renames `identify` found for a batch, recorded as of `day`."""
    if not moves:
        return
    async with pool.acquire() as conn, conn.transaction():
        for old, new, hub_id in moves:
            await conn.execute(
                "DELETE FROM snapshots o USING snapshots n"
                " WHERE o.model_id = $1 AND n.model_id = $2 AND o.snapshot_date = n.snapshot_date",
                old,
                new,
            )
            await conn.execute("UPDATE snapshots SET model_id = $2 WHERE model_id = $1", old, new)
            await conn.execute("UPDATE model_renames SET new_id = $2 WHERE new_id = $1", old, new)
            await conn.execute("DELETE FROM model_renames WHERE old_id = $1", new)  # renamed back
            await conn.execute(
                "INSERT INTO model_renames (old_id, new_id, hub_id, renamed_on) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (old_id) DO UPDATE SET new_id = EXCLUDED.new_id, renamed_on = EXCLUDED.renamed_on",
                old,
                new,
                hub_id,
                day,
            )
            await conn.execute("UPDATE hub_models SET model_id = $2 WHERE hub_id = $1", hub_id, new)


async def taken_on(pool: asyncpg.Pool, day: dt.date) -> set[str]:
    """The ids and Hub `_id`s already stored for `day`: a resumed or repeated walk does not store them twice."""
    rows = await pool.fetch(
        "SELECT s.model_id, h.hub_id FROM snapshots s LEFT JOIN hub_models h USING (model_id)"
        " WHERE s.snapshot_date = $1",
        day,
    )
    return {r["model_id"] for r in rows} | {r["hub_id"] for r in rows if r["hub_id"]}


async def count_snapshots(pool: asyncpg.Pool, day: dt.date) -> tuple[int, int]:
    """(rows, distinct models) of one day."""
    row = await pool.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT model_id) AS m FROM snapshots WHERE snapshot_date = $1", day
    )
    assert row is not None
    return int(row["n"]), int(row["m"])


async def models_on(pool: asyncpg.Pool, day: dt.date) -> int:
    """Models stored for `day` (one row each: the key is (snapshot_date, model_id)), every walk and import."""
    return int(await pool.fetchval("SELECT count(*) FROM snapshots WHERE snapshot_date = $1", day))


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
    report: dict[str, Any],
) -> None:
    """Record what is durable (rows written and events acknowledged): a restart resumes from `next_url`.
    report: the cycle's running totals (listed, skipped and cleaned by reason, renamed), stored as they are."""
    await pool.execute(
        """
        UPDATE ingest_cycles SET snapshot_date = COALESCE(snapshot_date, $2), next_url = $3,
            pages = pages + $4, models = models + $5, retries = retries + $6,
            failed_pages = failed_pages || $7::jsonb, listed = $8, skipped = $9::jsonb, cleaned = $10::jsonb,
            renamed = $11, updated_at = now()
        WHERE cycle_id = $1
        """,
        cycle_id,
        snapshot_date,
        next_url,
        pages,
        models,
        retries,
        failed_pages,
        report["listed"],
        report["skipped"],
        report["cleaned"],
        report["renamed"],
    )


async def finish_cycle(pool: asyncpg.Pool, cycle_id: int, status: str, error: str | None = None) -> None:
    await pool.execute(
        "UPDATE ingest_cycles SET status = $2, error = $3, next_url = NULL, finished_at = now(), updated_at = now()"
        " WHERE cycle_id = $1",
        cycle_id,
        status,
        error,
    )


async def mark_interrupted(pool: asyncpg.Pool, cycle_id: int, error: str) -> None:
    """The cycle stays 'running' at its checkpointed cursor (the failing page): the next run resumes there."""
    await pool.execute(
        "UPDATE ingest_cycles SET error = $2, updated_at = now() WHERE cycle_id = $1 AND status = 'running'",
        cycle_id,
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
