"""Fill the catalog read model with N synthetic models (for the search and catalog benchmarks and the tests).

Rows come from `SyntheticHub` and go through the scorer's own `catalog_records`, so they have the width the
scorer writes: every feature of the model (`FEATURE_COLUMNS`) and a five-feature explanation. The scorer is not
running, so `probability` is a documented stand-in, not a model output: trending_score / (trending_score + s),
with s the score at the `1 - pick_share` quantile, so about `pick_share` of the models sit above 0.5; features
other than log_downloads, likes_7d and growth_rate_7d are deterministic noise (they only give rows their
width). An empty table is bulk-loaded with its secondary indexes dropped and rebuilt afterwards (much faster
than maintaining a trigram index row by row).
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
from hubpulse_common.events import ModelFeatures, ModelFeaturesPacked
from hubpulse_common.features import FEATURE_COLUMNS
from hubpulse_common.synthetic import DayColumns, SyntheticHub
from hubpulse_scorer.app import MIGRATIONS
from hubpulse_scorer.repository import COPY_TARGETS, add_feature_sets
from hubpulse_scorer.service import DAILY_COLUMNS, Record, Scored, catalog_records, feature_rows

SCORER_VERSION_TABLE = "alembic_version_scorer"
SEED_VERSION = "seed"
SEED_THRESHOLD = 0.45
CHUNK = 50_000
_EXPLAINED = 5


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


def scored_chunks(
    cols: DayColumns, week_ago: DayColumns | None, pick_share: float, seed: int = 0, chunk: int = CHUNK
) -> Iterator[Scored]:
    """The day as the scorer would have scored it, `chunk` models at a time (2M feature dicts do not fit)."""
    probability = stand_in_probability(cols.trending_score, pick_share)
    growth = np.full(len(cols), np.nan)
    if week_ago is not None:
        before = _aligned(cols, week_ago, week_ago.downloads)
        with np.errstate(divide="ignore", invalid="ignore"):
            growth = np.where(before > 0, cols.downloads / before - 1.0, np.nan)
    tags = [list(t) for t in cols.tags_vocab]
    utc = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    noise_names = [c for c in FEATURE_COLUMNS if c not in ("log_downloads", "likes_7d", "growth_rate_7d")]
    rng = np.random.default_rng([seed, cols.date.toordinal()])
    for lo in range(0, len(cols), chunk):
        hi = min(lo + chunk, len(cols))
        noise = rng.standard_normal((hi - lo, len(noise_names))).astype(np.float32).tolist()
        weights = rng.standard_normal((hi - lo, _EXPLAINED)).tolist()
        events: list[ModelFeatures] = []
        explanations: list[str] = []
        for j, i in enumerate(range(lo, hi)):
            dl = int(cols.downloads[i])
            features: dict[str, float | None] = dict(zip(noise_names, noise[j], strict=True))
            features |= {"log_downloads": math.log1p(dl), "likes_7d": float(cols.likes7d[i])}
            features["growth_rate_7d"] = None if math.isnan(growth[i]) else float(growth[i])
            pipe, lib, lm = int(cols.pipeline_code[i]), int(cols.library_code[i]), int(cols.last_modified_ms[i])
            created = float(cols.created_ts[i])
            events.append(
                ModelFeatures.model_construct(
                    model_id=str(cols.model_id[i]),
                    snapshot_date=cols.date,
                    features=features,
                    provisional=False,
                    downloads=dl,
                    downloads_all_time=int(cols.downloads_all_time[i]) if cols.downloads_all_time[i] >= 0 else None,
                    likes=int(cols.likes[i]),
                    trending_rank=int(cols.trending_rank[i]) or None,
                    pipeline_tag=str(cols.pipeline_vocab[pipe]) if pipe >= 0 else None,
                    library_name=str(cols.library_vocab[lib]) if lib >= 0 else None,
                    author=str(cols.author_vocab[cols.author_code[i]]),
                    tags=tags[cols.tags_code[i]],
                    created_at=None if math.isnan(created) else dt.datetime.fromtimestamp(created, dt.UTC),
                    last_modified=utc + dt.timedelta(milliseconds=lm) if lm >= 0 else None,
                )
            )
            top = [noise_names[(i + k) % len(noise_names)] for k in range(_EXPLAINED)]
            explanations.append(
                orjson.dumps(
                    [
                        {"feature": f, "value": features[f], "contribution": w}
                        for f, w in zip(top, weights[j], strict=True)
                    ]
                ).decode()
            )
        yield Scored(
            feature_rows([ModelFeaturesPacked.of(events)]),
            SEED_VERSION,
            "trending",
            7,
            SEED_THRESHOLD,
            probability[lo:hi],
            explanations,
        )


def _daily_rows(cols: DayColumns, pick_share: float) -> Iterator[Record]:
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


def _chunks(rows: Iterator[Record], size: int) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def copy_catalog(conn: asyncpg.Connection, records: list[Record], details: bool = True) -> None:
    """Bulk-load catalog records (the scorer's `CATALOG_COLUMNS` tuples) into the catalog's tables."""
    for table, columns, pick in COPY_TARGETS:
        if details or table != "catalog_details":
            await conn.copy_records_to_table(table, records=[pick(r) for r in records], columns=list(columns))


async def seed_catalog(
    url: str,
    n_models: int,
    *,
    days: int = 8,
    history_days: int = 8,
    seed: int = 0,
    pick_share: float = 0.01,
    details: bool = True,
) -> SeedReport:
    """Migrate the catalog, then load the last day of an N-model synthetic Hub and `history_days` of history.

    `details` False leaves `catalog_details` (features, explanation: ~2.4 KB a model) empty, for a benchmark
    that only searches (search never reads it; at 2M it is ~5 GB of disk and minutes of seeding).
    """
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
        models = 0
        for scored in scored_chunks(latest, week_ago, pick_share, seed):
            records, _ = catalog_records(scored)
            await add_feature_sets(conn, [scored.rows.feature_set])
            await copy_catalog(conn, records, details)
            models += len(records)
        daily = 0
        for d in range(max(0, days - history_days), days):
            cols = latest if d == days - 1 else hub.day_columns(d)
            for chunk in _chunks(_daily_rows(cols, pick_share), CHUNK):
                await conn.copy_records_to_table("catalog_daily", records=chunk, columns=list(DAILY_COLUMNS))
                daily += len(chunk)
        for index in indexes:
            await conn.execute(index["indexdef"])
        # VACUUM sets the visibility map, so search's keyset walks are index-only scans from the start.
        await conn.execute("VACUUM ANALYZE catalog_models")
        await conn.execute("VACUUM ANALYZE catalog_details")
        await conn.execute("ANALYZE catalog_daily")
    finally:
        await conn.close()
    return SeedReport(models=models, daily_rows=daily, snapshot_date=latest.date)
