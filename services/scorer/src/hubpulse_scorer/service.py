"""Business logic of the scorer: plain functions on plain data (no I/O).

A batch of feature events becomes one frame, is scored by one model version in one XGBoost call
(probabilities and pred_contribs over the whole batch), and turns into score rows, catalog rows and
score events. The catalog's latest stats come from the feature events themselves (they carry the
day's raw stats), so the scorer never reads another service's tables.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hubpulse_common.events import Contribution, ModelFeatures, ModelScore
from hubpulse_scorer.model.artifact import TrainedModel

Record = tuple[Any, ...]

SCORE_COLUMNS: tuple[str, ...] = (
    "snapshot_date",
    "model_id",
    "model_version",
    "label",
    "horizon_days",
    "probability",
    "threshold",
    "top_features",
    "provisional",
)
CATALOG_COLUMNS: tuple[str, ...] = (
    "model_id",
    "author",
    "pipeline_tag",
    "library_name",
    "tags",
    "created_at",
    "last_modified",
    "snapshot_date",
    "downloads",
    "downloads_all_time",
    "likes",
    "trending_rank",
    "growth_7d",
    "probability",
    "model_version",
    "label",
    "threshold",
    "explanation",
    "features",
)
DAILY_COLUMNS: tuple[str, ...] = (
    "model_id",
    "snapshot_date",
    "downloads",
    "likes",
    "trending_rank",
    "probability",
    "model_version",
)


@dataclass(frozen=True)
class Scored:
    """One batch scored by one model version."""

    events: list[ModelFeatures]
    version: str
    label: str
    horizon_days: int
    threshold: float
    probability: np.ndarray
    top_features: list[list[Contribution]]


def latest_per_model_day(events: Iterable[ModelFeatures]) -> list[ModelFeatures]:
    """One event per model-day; a later one (the day's final features after provisional ones) wins."""
    latest: dict[tuple[str, dt.date], ModelFeatures] = {}
    for event in events:
        latest[(event.model_id, event.snapshot_date)] = event
    return list(latest.values())


def features_frame(events: Sequence[ModelFeatures], columns: Sequence[str]) -> pd.DataFrame:
    """The model's feature columns of each event (absent or null = NaN, which XGBoost treats as missing)."""
    nan = math.nan
    rows = [[v if (v := e.features.get(c)) is not None else nan for c in columns] for e in events]
    return pd.DataFrame(np.asarray(rows, dtype="float64").reshape(len(events), len(columns)), columns=list(columns))


def score(model: TrainedModel, events: Sequence[ModelFeatures], top_n: int) -> Scored:
    """Calibrated probabilities and the top signed contributions of every event, by `model`."""
    frame = features_frame(events, model.feature_columns)
    probability = model.predict_proba(frame)
    explained = model.explain(frame, top_n=top_n)
    x = frame.to_numpy()
    position = {c: i for i, c in enumerate(model.feature_columns)}
    top = [
        [
            Contribution(
                feature=str(c["feature"]),
                value=None if math.isnan(v := float(x[row, position[str(c["feature"])]])) else v,
                contribution=float(c["contribution"]),
            )
            for c in contributions
        ]
        for row, contributions in enumerate(explained)
    ]
    meta = model.metadata
    return Scored(
        events=list(events),
        version=meta.version,
        label=str(meta.label.get("label", "trending")),
        horizon_days=int(meta.label.get("horizon", 7)),
        threshold=float(meta.threshold),
        probability=probability,
        top_features=top,
    )


def _explanation_json(contributions: list[Contribution]) -> str:
    return json.dumps([c.model_dump() for c in contributions])


def score_records(scored: Scored) -> list[Record]:
    return [
        (
            e.snapshot_date,
            e.model_id,
            scored.version,
            scored.label,
            scored.horizon_days,
            float(p),
            scored.threshold,
            _explanation_json(top),
            e.provisional,
        )
        for e, p, top in zip(scored.events, scored.probability, scored.top_features, strict=True)
    ]


def catalog_records(scored: Scored) -> tuple[list[Record], list[Record]]:
    """(catalog_models rows, catalog_daily rows) of a scored batch; jsonb columns as JSON text.

    catalog_models gets one row per model (its latest day in the batch): an upsert may touch a row once.
    """
    models: dict[str, Record] = {}
    daily: list[Record] = []
    for e, p, top in zip(scored.events, scored.probability, scored.top_features, strict=True):
        probability = float(p)
        daily.append(
            (e.model_id, e.snapshot_date, e.downloads or 0, e.likes or 0, e.trending_rank, probability, scored.version)
        )
        if e.model_id in models and models[e.model_id][7] > e.snapshot_date:
            continue
        models[e.model_id] = (
            e.model_id,
            e.author,
            e.pipeline_tag,
            e.library_name,
            list(e.tags),
            e.created_at,
            e.last_modified,
            e.snapshot_date,
            e.downloads or 0,
            e.downloads_all_time,
            e.likes or 0,
            e.trending_rank,
            e.features.get("growth_rate_7d"),
            probability,
            scored.version,
            scored.label,
            scored.threshold,
            _explanation_json(top),
            json.dumps(e.features),
        )
    return list(models.values()), daily


def score_events(scored: Scored) -> list[ModelScore]:
    return [
        ModelScore(
            model_id=e.model_id,
            snapshot_date=e.snapshot_date,
            model_version=scored.version,
            label=scored.label,
            horizon_days=scored.horizon_days,
            probability=float(p),
            threshold=scored.threshold,
            top_features=top,
        )
        for e, p, top in zip(scored.events, scored.probability, scored.top_features, strict=True)
    ]
