"""PostgreSQL I/O of the scorer: scores and the catalog read model, COPY into staging then one upsert each.

The catalog is two tables: `catalog_models`, what search sorts and filters on (a dozen
indexes, so every changed row costs an entry in each), and `catalog_details`, the wide features and explanation
(primary key only). A row whose values did not change (a redelivered batch) is not rewritten at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter

import asyncpg

from hubpulse_common import renames
from hubpulse_scorer.service import CATALOG_COLUMNS, DAILY_COLUMNS, SCORE_COLUMNS, Record

# Staging tables spell JSON columns as text: COPY sends text; scores.top_features is cast to jsonb by its upsert.
_STAGING = {
    "scores_staging": """
        snapshot_date date, model_id text, model_version text, label text, horizon_days integer,
        probability double precision, threshold double precision, top_features text, provisional boolean""",
    "catalog_models_staging": """
        model_id text, author text, pipeline_tag text, library_name text, tags text[], created_at timestamptz,
        last_modified timestamptz, snapshot_date date, downloads bigint, downloads_all_time bigint, likes integer,
        trending_rank integer, growth_7d double precision, probability double precision, model_version text,
        label text, threshold double precision, likes_7d double precision, explanation text, features text""",
    "catalog_daily_staging": """
        model_id text, snapshot_date date, downloads bigint, likes integer, trending_rank integer,
        probability double precision, model_version text""",
}


_WIDE = ("explanation", "features")  # catalog_details only; both tables carry the key and the day
DETAIL_COLUMNS = ("model_id", "snapshot_date", *_WIDE)
MODEL_COLUMNS = tuple(c for c in CATALOG_COLUMNS if c not in _WIDE)


def _part(columns: Sequence[str]) -> Callable[[Record], Record]:
    get: Callable[[Record], Record] = itemgetter(*(CATALOG_COLUMNS.index(c) for c in columns))
    return get


# Where a bulk load (the benchmarks' seed) puts `CATALOG_COLUMNS` records: (table, its columns, the record's part).
COPY_TARGETS: tuple[tuple[str, tuple[str, ...], Callable[[Record], Record]], ...] = (
    ("catalog_models", MODEL_COLUMNS, _part(MODEL_COLUMNS)),
    ("catalog_details", DETAIL_COLUMNS, _part(DETAIL_COLUMNS)),
)


def _select(columns: Sequence[str], jsonb: Sequence[str]) -> str:
    return ", ".join(f"{c}::jsonb" if c in jsonb else c for c in columns)


def _updates(columns: Sequence[str], keys: Sequence[str]) -> str:
    return ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in keys)


def _changed(table: str, columns: Sequence[str], keys: Sequence[str]) -> str:
    """The row's values differ from the incoming ones (NULL-safe): else the update is skipped, no new version."""
    values = [c for c in columns if c not in keys]
    return (
        f"({', '.join(f'{table}.{c}' for c in values)}) IS DISTINCT FROM ({', '.join(f'EXCLUDED.{c}' for c in values)})"
    )


_UPSERT_SCORES = f"""
    INSERT INTO scores ({", ".join(SCORE_COLUMNS)})
    SELECT {_select(SCORE_COLUMNS, ["top_features"])} FROM scores_staging
    ON CONFLICT (snapshot_date, model_id, model_version) DO UPDATE SET
        {_updates(SCORE_COLUMNS, ["snapshot_date", "model_id", "model_version"])}, scored_at = now()
"""  # noqa: S608 (identifiers are module constants)
# The catalog keeps each model's latest day: an older day arriving late only lands in catalog_daily.
# updated_at (the live picks feed's clock) moves only when the row changes.
_UPSERT_CATALOG = f"""
    INSERT INTO catalog_models ({", ".join(MODEL_COLUMNS)})
    SELECT {", ".join(MODEL_COLUMNS)} FROM catalog_models_staging
    ON CONFLICT (model_id) DO UPDATE SET {_updates(MODEL_COLUMNS, ["model_id"])}, updated_at = now()
    WHERE catalog_models.snapshot_date <= EXCLUDED.snapshot_date
      AND {_changed("catalog_models", MODEL_COLUMNS, ["model_id"])}
"""  # noqa: S608 (identifiers are module constants)
_UPSERT_DETAILS = f"""
    INSERT INTO catalog_details ({", ".join(DETAIL_COLUMNS)})
    SELECT {", ".join(DETAIL_COLUMNS)} FROM catalog_models_staging
    ON CONFLICT (model_id) DO UPDATE SET {_updates(DETAIL_COLUMNS, ["model_id"])}
    WHERE catalog_details.snapshot_date <= EXCLUDED.snapshot_date
      AND {_changed("catalog_details", DETAIL_COLUMNS, ["model_id"])}
"""  # noqa: S608 (identifiers are module constants)
_UPSERT_DAILY = f"""
    INSERT INTO catalog_daily ({", ".join(DAILY_COLUMNS)})
    SELECT {", ".join(DAILY_COLUMNS)} FROM catalog_daily_staging
    ON CONFLICT (model_id, snapshot_date) DO UPDATE SET {_updates(DAILY_COLUMNS, ["model_id", "snapshot_date"])}
"""  # noqa: S608 (identifiers are module constants)


async def _stage(conn: asyncpg.Connection, table: str, records: Sequence[Record], columns: Sequence[str]) -> None:
    await conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} ({_STAGING[table]}) ON COMMIT DELETE ROWS")
    await conn.copy_records_to_table(table, records=records, columns=list(columns))


async def write_batch(
    pool: asyncpg.Pool, scores: Sequence[Record], catalog: Sequence[Record], daily: Sequence[Record]
) -> None:
    """Scores, catalog and daily rows of one batch in one transaction; idempotent on their natural keys."""
    async with pool.acquire() as conn, conn.transaction():
        await _stage(conn, "scores_staging", scores, SCORE_COLUMNS)
        await conn.execute(_UPSERT_SCORES)
        await _stage(conn, "catalog_models_staging", catalog, CATALOG_COLUMNS)
        await conn.execute(_UPSERT_CATALOG)
        await conn.execute(_UPSERT_DETAILS)
        await _stage(conn, "catalog_daily_staging", daily, DAILY_COLUMNS)
        await conn.execute(_UPSERT_DAILY)


# Every table keyed by model (hubpulse_common.renames): a rename moves them all, so the old id leaves search.
_RENAMED_TABLES = (
    renames.Keyed("scores", ("snapshot_date", "model_version")),
    renames.Keyed("catalog_daily", ("snapshot_date",)),
    renames.Keyed("catalog_models"),
    renames.Keyed("catalog_details"),
)


async def follow_renames(
    pool: asyncpg.Pool, marked: Sequence[renames.Rename], model_ids: Sequence[str]
) -> dict[str, renames.Rename]:
    """Applies a batch's renames to the scores and the catalog in one transaction; the aliases of its model ids."""
    async with pool.acquire() as conn, conn.transaction():
        return await renames.follow(conn, "score_renames", marked, _RENAMED_TABLES, model_ids)
