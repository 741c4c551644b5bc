"""Reads of the scorer's catalog (catalog_models, catalog_daily). The gateway never writes it.

SQL text is assembled only from the fixed column lists and sort mapping here; every value is a bind parameter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from hubpulse_gateway.catalog.service import NULLABLE_SORTS, SORT_COLUMNS, SearchQuery, like_pattern

SUMMARY_COLUMNS = (
    "model_id, author, pipeline_tag, library_name, tags, created_at, snapshot_date, downloads, likes, "
    "trending_rank, growth_7d, probability"
)


def search_sql(query: SearchQuery) -> tuple[str, list[Any]]:
    """One parameterised SELECT for a search; the shapes are few, so asyncpg's statement cache covers them."""
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    where: list[str] = []
    for term in query.terms:
        # The trigram index serves ILIKE on the id (author/name); tags match whole (GIN on tags).
        where.append(f"(model_id ILIKE {arg(like_pattern(term))} OR tags @> ARRAY[{arg(term)}]::text[])")
    if query.task is not None:
        where.append(f"pipeline_tag = {arg(query.task)}")
    if query.library is not None:
        where.append(f"library_name = {arg(query.library)}")
    if query.min_downloads is not None:
        where.append(f"downloads >= {arg(query.min_downloads)}")
    if query.max_downloads is not None:
        where.append(f"downloads <= {arg(query.max_downloads)}")
    if query.min_likes is not None:
        where.append(f"likes >= {arg(query.min_likes)}")
    column = SORT_COLUMNS[query.sort]
    if query.cursor is not None:
        # Keyset on (column DESC NULLS LAST, model_id ASC): strictly after the cursor's row.
        mid = arg(query.cursor.model_id)
        if query.cursor.value is None:
            where.append(f"({column} IS NULL AND model_id > {mid})")
        else:
            value = arg(query.cursor.value)
            after = f"{column} < {value} OR ({column} = {value} AND model_id > {mid})"
            where.append(f"({after} OR {column} IS NULL)" if query.sort in NULLABLE_SORTS else f"({after})")
    sql = (
        f"SELECT {SUMMARY_COLUMNS} FROM catalog_models"  # noqa: S608
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY {column} DESC NULLS LAST, model_id LIMIT {arg(query.limit + 1)}"
    )
    return sql, args


async def search(pool: asyncpg.Pool, query: SearchQuery) -> list[asyncpg.Record]:
    sql, args = search_sql(query)
    rows: list[asyncpg.Record] = await pool.fetch(sql, *args)
    return rows


async def model(pool: asyncpg.Pool, model_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(
        f"SELECT {SUMMARY_COLUMNS}, downloads_all_time, last_modified, model_version, label, threshold, "  # noqa: S608
        "explanation, features FROM catalog_models WHERE model_id = $1",
        model_id,
    )
    return row


async def daily(pool: asyncpg.Pool, model_id: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT snapshot_date, downloads, likes, trending_rank, probability, model_version "
        "FROM catalog_daily WHERE model_id = $1 ORDER BY snapshot_date",
        model_id,
    )
    return rows


_PICK_COLUMNS = (
    "model_id, pipeline_tag, library_name, downloads, likes, probability, snapshot_date, updated_at, "
    "CASE WHEN jsonb_typeof(features->'likes_7d') = 'number' "
    "THEN (features->>'likes_7d')::double precision END AS likes_7d"
)


async def picks(pool: asyncpg.Pool, threshold: float, limit: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        f"SELECT {_PICK_COLUMNS} FROM catalog_models WHERE probability >= $1 "  # noqa: S608
        "ORDER BY probability DESC NULLS LAST, model_id LIMIT $2",
        threshold,
        limit,
    )
    return rows


async def picks_changed_since(
    pool: asyncpg.Pool, since: datetime, min_threshold: float, limit: int
) -> list[asyncpg.Record]:
    """Rows scored at or above `min_threshold` and touched after `since`, oldest change first."""
    rows: list[asyncpg.Record] = await pool.fetch(
        f"SELECT {_PICK_COLUMNS} FROM catalog_models WHERE updated_at > $1 AND probability >= $2 "  # noqa: S608
        "ORDER BY updated_at LIMIT $3",
        since,
        min_threshold,
        limit,
    )
    return rows


async def latest_update(pool: asyncpg.Pool) -> datetime | None:
    value: datetime | None = await pool.fetchval("SELECT max(updated_at) FROM catalog_models")
    return value
