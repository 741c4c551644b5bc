"""PostgreSQL I/O of the scorer: the catalog read model. A batch's new rows go in by COPY; rows already there (a
redelivered batch) through one upsert each.

The catalog is `catalog_models`, what search sorts and filters on (17 indexes), built and swapped in once a day
(`catalog_swap`) from the day's `catalog_build` partition (primary key only), where a batch writes each
model-day's row once, its details (features vector, explanation) included; `catalog_details` keeps the details
of models whose build partition has been dropped (hubpulse_common.catalog_details says where details are read).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from operator import itemgetter

import asyncpg

from hubpulse_common import renames
from hubpulse_common.catalog_details import details_of
from hubpulse_common.catalog_keys import SORT_KEYS
from hubpulse_common.feature_vectors import FeatureSet
from hubpulse_scorer.service import CATALOG_COLUMNS, DAILY_COLUMNS, Record

# JSON columns are text (scorer migrations 0007, 0012): COPY sends the scorer's JSON text as it is.
_STAGING = {
    "catalog_models_staging": """
        model_id text, author text, pipeline_tag text, library_name text, tags text[], created_at timestamptz,
        last_modified timestamptz, snapshot_date date, downloads bigint, downloads_all_time bigint, likes integer,
        trending_rank integer, growth_7d double precision, probability double precision, model_version text,
        label text, threshold double precision, likes_7d double precision, explanation text, feature_set text,
        features bytea""",
    "catalog_daily_staging": """
        model_id text, snapshot_date date, downloads bigint, likes integer, trending_rank integer,
        probability double precision, model_version text""",
}


_WIDE = ("explanation", "feature_set", "features")  # catalog_details only; both tables carry the key and the day
# and the model version that scored the features: it explains them on demand (`explanations`)
DETAIL_COLUMNS = ("model_id", "snapshot_date", "model_version", *_WIDE)
MODEL_COLUMNS = tuple(c for c in CATALOG_COLUMNS if c not in _WIDE)


_DAY_OF: Callable[[Record], dt.date] = itemgetter(CATALOG_COLUMNS.index("snapshot_date"))


def _part(columns: Sequence[str]) -> Callable[[Record], Record]:
    get: Callable[[Record], Record] = itemgetter(*(CATALOG_COLUMNS.index(c) for c in columns))
    return get


# Where a bulk load (the benchmarks' seed) puts `CATALOG_COLUMNS` records: (table, its columns, the record's part).
COPY_TARGETS: tuple[tuple[str, tuple[str, ...], Callable[[Record], Record]], ...] = (
    ("catalog_models", MODEL_COLUMNS, _part(MODEL_COLUMNS)),
    ("catalog_details", DETAIL_COLUMNS, _part(DETAIL_COLUMNS)),
)


def _updates(columns: Sequence[str], keys: Sequence[str]) -> str:
    return ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in keys)


def _changed(table: str, columns: Sequence[str], keys: Sequence[str]) -> str:
    """The row's values differ from the incoming ones (NULL-safe): else the update is skipped, no new version."""
    values = [c for c in columns if c not in keys]
    return (
        f"({', '.join(f'{table}.{c}' for c in values)}) IS DISTINCT FROM ({', '.join(f'EXCLUDED.{c}' for c in values)})"
    )


_KEYS = ("model_id", "snapshot_date")
_SCORED = [c for c in CATALOG_COLUMNS if c != "explanation"]  # what an explanation is of
# The day's rows for the next catalog_models (the swap keeps each model's latest day) with their details. A row
# that did not change (a redelivery) is not written: one that comes without an explanation (not explained when
# scored) keeps one computed on demand meanwhile; any other change clears it. The outer query sees the table as it
# was before the insert: a written row it does not find there is a new model-day, counted in catalog_days in the
# same transaction (partitioned tables have no `xmax = 0` in RETURNING). A day is due for a swap again only when a
# row changed.
_UPSERT_BUILD = f"""
    WITH written AS (
        INSERT INTO catalog_build ({", ".join(CATALOG_COLUMNS)})
        SELECT {", ".join(CATALOG_COLUMNS)} FROM catalog_models_staging
        ON CONFLICT (snapshot_date, model_id) DO UPDATE SET {_updates(CATALOG_COLUMNS, _KEYS)}
        WHERE {_changed("catalog_build", _SCORED, _KEYS)}
           OR EXCLUDED.explanation IS NOT NULL AND EXCLUDED.explanation IS DISTINCT FROM catalog_build.explanation
        RETURNING snapshot_date, model_id
    )
    SELECT w.snapshot_date, count(*) AS written, count(*) FILTER (WHERE NOT EXISTS (
        SELECT FROM catalog_build b WHERE b.snapshot_date = w.snapshot_date AND b.model_id = w.model_id
    )) AS inserted
    FROM written w GROUP BY w.snapshot_date
"""  # noqa: S608 (identifiers are module constants)
_COUNT_DAY = """
    INSERT INTO catalog_days AS d (snapshot_date, day_models, built_rows) VALUES ($1, $2, $3)
    ON CONFLICT (snapshot_date) DO UPDATE SET day_models = GREATEST(d.day_models, EXCLUDED.day_models),
        built_rows = d.built_rows + EXCLUDED.built_rows,
        written_at = CASE WHEN $4 THEN now() ELSE d.written_at END
"""
_UPSERT_DAILY = f"""
    INSERT INTO catalog_daily ({", ".join(DAILY_COLUMNS)})
    SELECT {", ".join(DAILY_COLUMNS)} FROM catalog_daily_staging
    ON CONFLICT (model_id, snapshot_date) DO UPDATE SET {_updates(DAILY_COLUMNS, ["model_id", "snapshot_date"])}
"""  # noqa: S608 (identifiers are module constants)


def build_partition(day: dt.date) -> str:
    return f"catalog_build_{day:%Y%m%d}"


async def ensure_build_partition(pool: asyncpg.Pool, day: dt.date) -> None:
    """The day's catalog_build partition, created on first use (its own transaction: it locks the parent)."""
    name = build_partition(day)
    if await pool.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
        return
    async with pool.acquire() as conn, conn.transaction():
        # replicas may race on a new day: one creates, the other finds it
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('hubpulse-catalog-build-partitions'))")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF catalog_build "
            f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + dt.timedelta(days=1)).isoformat()}')"
        )


async def _stage(conn: asyncpg.Connection, table: str, records: Sequence[Record], columns: Sequence[str]) -> None:
    await conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} ({_STAGING[table]}) ON COMMIT DELETE ROWS")
    await conn.copy_records_to_table(table, records=records, columns=list(columns))


async def _copy_new_rows(
    conn: asyncpg.Connection, catalog: Sequence[Record], daily: Sequence[Record]
) -> dict[dt.date, int] | None:
    """The batch's build and daily rows by plain COPY, in a savepoint: a model-day is new to them but for a
    redelivered batch or a day scored again. None when a table already holds one of them (nothing written then:
    the upserts decide); else the rows inserted per day."""
    try:
        async with conn.transaction():
            await conn.copy_records_to_table("catalog_build", records=catalog, columns=list(CATALOG_COLUMNS))
            await conn.copy_records_to_table("catalog_daily", records=daily, columns=list(DAILY_COLUMNS))
    except asyncpg.UniqueViolationError:
        return None
    return dict(Counter(map(_DAY_OF, catalog)))


async def _upsert_rows(
    conn: asyncpg.Connection, catalog: Sequence[Record], daily: Sequence[Record]
) -> dict[dt.date, int]:
    """The build and daily rows by upsert (each staged first); the days with a row written (changed), with how many
    of them were new."""
    await _stage(conn, "catalog_models_staging", catalog, CATALOG_COLUMNS)
    written = {r["snapshot_date"]: int(r["inserted"]) for r in await conn.fetch(_UPSERT_BUILD)}
    await _stage(conn, "catalog_daily_staging", daily, DAILY_COLUMNS)
    await conn.execute(_UPSERT_DAILY)
    return written


_ADD_FEATURE_SET = "INSERT INTO catalog_feature_sets (feature_set, names) VALUES ($1, $2) ON CONFLICT DO NOTHING"


async def add_feature_sets(executor: asyncpg.Pool | asyncpg.Connection, sets: Iterable[FeatureSet]) -> None:
    """The names that detail rows' feature vectors follow (a set is written once, then found)."""
    await executor.executemany(_ADD_FEATURE_SET, [(s.key, list(s.names)) for s in sets])


async def write_batch(
    pool: asyncpg.Pool,
    catalog: Sequence[Record],
    daily: Sequence[Record],
    day_models: Mapping[dt.date, int] | None = None,
    *,
    feature_sets: Iterable[FeatureSet],
) -> None:
    """The build and daily rows of one batch (one of each per model-day) in one transaction; idempotent on their
    natural keys. A model-day's score is in both (probability, model version); `hub.scores.v2` carries each score.

    `day_models`: how many models each day has (the features close says), so the swap knows when it has them all.
    `feature_sets`: the sets the catalog rows' feature vectors follow.
    """
    days = sorted(set(map(_DAY_OF, catalog)))
    for day in days:
        await ensure_build_partition(pool, day)
    async with pool.acquire() as conn, conn.transaction():
        await add_feature_sets(conn, feature_sets)
        written = await _copy_new_rows(conn, catalog, daily)
        if written is None:
            written = await _upsert_rows(conn, catalog, daily)
        # Last: every batch of the day updates this one row, and its lock is held until the commit; taken
        # earlier, the other replicas' batches queued behind this one's build and daily writes.
        await conn.executemany(
            _COUNT_DAY,
            [(day, (day_models or {}).get(day, 0), written.get(day, 0), day in written) for day in days],
        )


# Every table keyed by model (hubpulse_common.renames): a rename moves them all, so the old id leaves search.
_RENAMED_TABLES = (
    renames.Keyed("catalog_daily", ("snapshot_date",)),
    renames.Keyed("catalog_models"),
    renames.Keyed("catalog_build", ("snapshot_date",)),
    renames.Keyed("catalog_details"),
)
# The catalog swap holds this (session-level) from its fill to its rename: a re-key of catalog_models in
# between would be lost with the table it was made in, so a batch with renames waits for a running swap.
SWAP_LOCK = "hashtext('hubpulse-catalog-swap')"


# Held shared by every batch from reading its aliases to writing its rows, and exclusively by a batch that
# applies renames: a batch on another replica then either wrote before the move (and its rows are moved) or
# reads the rename after it (and files its rows under the new name); no late row stays under the old name.
RENAMES_LOCK = "hashtext('hubpulse-scorer-renames')"


@asynccontextmanager
async def renames_guard(pool: asyncpg.Pool, *, exclusive: bool) -> AsyncIterator[None]:
    """RENAMES_LOCK for the duration of the block, on a connection of its own (session level: the block spans
    several transactions). A crash drops the connection and with it the lock."""
    mode = "" if exclusive else "_shared"
    async with pool.acquire() as conn:
        await conn.execute(f"SELECT pg_advisory_lock{mode}({RENAMES_LOCK})")
        try:
            yield
        finally:
            await conn.execute(f"SELECT pg_advisory_unlock{mode}({RENAMES_LOCK})")


async def follow_renames(
    pool: asyncpg.Pool, marked: Sequence[renames.Rename], model_ids: Sequence[str]
) -> dict[str, renames.Rename]:
    """Applies a batch's renames to the catalog in one transaction; the aliases of its model ids."""
    async with pool.acquire() as conn, conn.transaction():
        if marked:
            await conn.execute(f"SELECT pg_advisory_xact_lock_shared({SWAP_LOCK})")
        return await renames.follow(conn, "score_renames", marked, _RENAMED_TABLES, model_ids)


def _to_explain(models: str) -> str:
    """Explanations computed after scoring (`explanations`): the details of `models`' rows (the features and the
    version that scored them), where they are (hubpulse_common.catalog_details)."""
    return (
        "SELECT m.model_id, d.snapshot_date, d.model_version, d.explanation, d.features, d.names "  # noqa: S608
        f"FROM {models} m CROSS JOIN LATERAL ({details_of('m')}) d"
    )


async def explanation_source(pool: asyncpg.Pool, model_id: str) -> asyncpg.Record | None:
    """The model's details: its latest scored features, their model version and explanation (None: not yet)."""
    row: asyncpg.Record | None = await pool.fetchrow(f"{_to_explain('catalog_models')} WHERE m.model_id = $1", model_id)
    return row


async def unexplained_tops(conn: asyncpg.Connection, table: str, n: int) -> list[asyncpg.Record]:
    """Details without an explanation among the first `n` models of each search sort of `table` (a copy of
    catalog_models: a walk of each sort's index, the order the gateway pages in)."""
    walks = " UNION ".join(
        f"(SELECT model_id FROM {table} ORDER BY {key.expression} DESC, model_id LIMIT $1)"  # noqa: S608 (a module constant)
        for key in SORT_KEYS.values()
    )
    unexplained = "d.explanation IS NULL AND d.model_version IS NOT NULL"
    rows: list[asyncpg.Record] = await conn.fetch(
        f"{_to_explain(table)} WHERE m.model_id IN ({walks}) AND {unexplained}", n
    )
    return rows


def keep_details(partition: str) -> str:
    """A build partition's rows that are still the live catalog's (models absent from the Hub since that day),
    kept in catalog_details before the partition is dropped (hubpulse_common.catalog_details)."""
    return f"""
    INSERT INTO catalog_details ({", ".join(DETAIL_COLUMNS)})
    SELECT {", ".join(f"p.{c}" for c in DETAIL_COLUMNS)}
    FROM {partition} p JOIN catalog_models m ON m.model_id = p.model_id AND m.snapshot_date = p.snapshot_date
    WHERE p.features IS NOT NULL
    ON CONFLICT (model_id) DO UPDATE SET {_updates(DETAIL_COLUMNS, ["model_id"])}
    WHERE catalog_details.snapshot_date <= EXCLUDED.snapshot_date
"""  # noqa: S608 (identifiers are module constants)


# Only where the row still holds what was explained: a newer day, version or features written meanwhile wins.
_CACHE = """
    UPDATE {table} d SET explanation = x.explanation
    FROM unnest($1::text[], $2::date[], $3::text[], $4::bytea[], $5::text[])
        AS x(model_id, snapshot_date, model_version, features, explanation)
    WHERE d.model_id = x.model_id AND d.snapshot_date = x.snapshot_date AND d.model_version = x.model_version
      AND d.features = x.features AND d.explanation IS NULL
"""
_CACHE_KEPT = _CACHE.format(table="catalog_details")
# One day at a time: with the day bound, PostgreSQL prunes to its partition and probes its key per row (0.10 s for
# ~5,000 tops at 200k); joined to the rows alone it hashed every partition (0.80 s; pipeline-redesign.md).
_CACHE_BUILT = _CACHE.format(table="catalog_build") + "      AND d.snapshot_date = $6\n"


async def cache_explanations(
    executor: asyncpg.Pool | asyncpg.Connection, rows: Sequence[asyncpg.Record], explanations: Sequence[str]
) -> None:
    """Stores the explanations of detail rows (`explanation_source` / `unexplained_tops` rows) in those rows: a
    build row or a kept one (hubpulse_common.catalog_details); the one that matches is written."""
    args = (
        [r["model_id"] for r in rows],
        [r["snapshot_date"] for r in rows],
        [r["model_version"] for r in rows],
        [r["features"] for r in rows],
        list(explanations),
    )
    for day in sorted(set(args[1])):
        await executor.execute(_CACHE_BUILT, *args, day)
    await executor.execute(_CACHE_KEPT, *args)
