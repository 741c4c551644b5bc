"""Fill the catalog read model with N synthetic models (for the search benchmark and the gateway's tests).

Rows come from `SyntheticHub`; the scorer is not running, so `probability` is a documented stand-in, not a
model output: trending_score / (trending_score + s), with s the score at the `1 - pick_share` quantile, so
about `pick_share` of the models sit above 0.5. An empty table is bulk-loaded with its secondary indexes
dropped and rebuilt afterwards (much faster than maintaining a trigram index row by row).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import numpy as np
import orjson

from hubpulse_common import db
from hubpulse_common.synthetic import DayColumns, SyntheticHub
from hubpulse_scorer.app import MIGRATIONS

SCORER_VERSION_TABLE = "alembic_version_scorer"
SEED_VERSION = "seed"
SEED_THRESHOLD = 0.45

MODEL_COLUMNS = (
    "model_id", "author", "pipeline_tag", "library_name", "tags", "created_at", "last_modified", "snapshot_date",
    "downloads", "downloads_all_time", "likes", "trending_rank", "growth_7d", "probability", "model_version",
    "label", "threshold", "explanation", "features",
)  # fmt: skip
DAILY_COLUMNS = ("model_id", "snapshot_date", "downloads", "likes", "trending_rank", "probability", "model_version")


@dataclass(frozen=True)
class SeedReport:
    models: int
    daily_rows: int
    snapshot_date: dt.date


def stand_in_probability(trending_score: np.ndarray, pick_share: float) -> np.ndarray:
    positive = trending_score[trending_score > 0]
    scale = float(np.quantile(positive, 1 - pick_share)) if len(positive) else 1.0
    score = trending_score.astype(np.float64)
    out: np.ndarray = score / (score + max(scale, 1.0))
    return out


def _aligned(now: DayColumns, then: DayColumns, values: np.ndarray) -> np.ndarray:
    """`values` of day `then`, placed on the rows of day `now` (NaN where the model did not exist yet)."""
    pos = np.searchsorted(then.model_index, now.model_index)
    pos = np.minimum(pos, len(then.model_index) - 1)
    found = then.model_index[pos] == now.model_index
    return np.where(found, values[pos].astype(np.float64), np.nan)


def _none_if_nan(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values.tolist()]


def _model_rows(cols: DayColumns, week_ago: DayColumns | None, pick_share: float) -> Iterator[tuple[object, ...]]:
    probability = stand_in_probability(cols.trending_score, pick_share)
    growth = np.full(len(cols), np.nan)
    if week_ago is not None:
        before = _aligned(cols, week_ago, week_ago.downloads)
        with np.errstate(divide="ignore", invalid="ignore"):
            growth = np.where(before > 0, cols.downloads / before - 1.0, np.nan)
    tags = [list(t) for t in cols.tags_vocab]
    created = [None if math.isnan(ts) else dt.datetime.fromtimestamp(ts, dt.UTC) for ts in cols.created_ts.tolist()]
    utc_ms = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    for i, (mid, author, pipe, lib, tag, dl, dat, likes, likes7d, rank, lm, grow, prob) in enumerate(
        zip(
            cols.model_id.tolist(),
            cols.author_code.tolist(),
            cols.pipeline_code.tolist(),
            cols.library_code.tolist(),
            cols.tags_code.tolist(),
            cols.downloads.tolist(),
            cols.downloads_all_time.tolist(),
            cols.likes.tolist(),
            cols.likes7d.tolist(),
            cols.trending_rank.tolist(),
            cols.last_modified_ms.tolist(),
            _none_if_nan(growth),
            probability.tolist(),
            strict=True,
        )
    ):
        features = {"log_downloads": math.log1p(dl), "likes_7d": likes7d, "growth_rate_7d": grow}
        yield (
            mid,
            cols.author_vocab[author],
            cols.pipeline_vocab[pipe] if pipe >= 0 else None,
            cols.library_vocab[lib] if lib >= 0 else None,
            tags[tag],
            created[i],
            utc_ms + dt.timedelta(milliseconds=lm) if lm >= 0 else None,
            cols.date,
            dl,
            dat if dat >= 0 else None,
            likes,
            rank or None,
            grow,
            prob,
            SEED_VERSION,
            "trending",
            SEED_THRESHOLD,
            "[]",
            orjson.dumps(features).decode(),
        )


def _daily_rows(cols: DayColumns, pick_share: float) -> Iterator[tuple[object, ...]]:
    probability = stand_in_probability(cols.trending_score, pick_share)
    for mid, dl, likes, rank, prob in zip(
        cols.model_id.tolist(),
        cols.downloads.tolist(),
        cols.likes.tolist(),
        cols.trending_rank.tolist(),
        probability.tolist(),
        strict=True,
    ):
        yield (mid, cols.date, dl, likes, rank or None, prob, SEED_VERSION)


def _chunks(rows: Iterator[tuple[object, ...]], size: int) -> Iterator[list[tuple[object, ...]]]:
    chunk: list[tuple[object, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def _copy(
    conn: asyncpg.Connection, table: str, columns: tuple[str, ...], rows: Iterator[tuple[object, ...]]
) -> int:
    total = 0
    for chunk in _chunks(rows, 50_000):
        await conn.copy_records_to_table(table, records=chunk, columns=list(columns))
        total += len(chunk)
    return total


async def seed_catalog(
    url: str,
    n_models: int,
    *,
    days: int = 8,
    history_days: int = 8,
    seed: int = 0,
    pick_share: float = 0.01,
) -> SeedReport:
    """Migrate the catalog, then load the last day of an N-model synthetic Hub and `history_days` of history."""
    await db.migrate(url, MIGRATIONS, SCORER_VERSION_TABLE)
    hub = SyntheticHub(n_models, days, seed=seed)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET maintenance_work_mem = '512MB'")
        empty = not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM catalog_models)")
        indexes = []
        if empty:  # bulk load: rebuild the secondary indexes once at the end
            indexes = await conn.fetch(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i JOIN pg_class c ON c.relname = i.indexname "
                "JOIN pg_index x ON x.indexrelid = c.oid WHERE i.tablename = 'catalog_models' AND NOT x.indisprimary"
            )
            for index in indexes:
                await conn.execute(f'DROP INDEX "{index["indexname"]}"')
        latest = hub.day_columns(days - 1)
        week_ago = hub.day_columns(days - 8) if days >= 8 else None
        models = await _copy(conn, "catalog_models", MODEL_COLUMNS, _model_rows(latest, week_ago, pick_share))
        daily = 0
        for d in range(max(0, days - history_days), days):
            cols = latest if d == days - 1 else hub.day_columns(d)
            daily += await _copy(conn, "catalog_daily", DAILY_COLUMNS, _daily_rows(cols, pick_share))
        for index in indexes:
            await conn.execute(index["indexdef"])
        # VACUUM sets the visibility map, so search's keyset walks are index-only scans from the start.
        await conn.execute("VACUUM ANALYZE catalog_models")
        await conn.execute("ANALYZE catalog_daily")
    finally:
        await conn.close()
    return SeedReport(models=models, daily_rows=daily, snapshot_date=latest.date)
