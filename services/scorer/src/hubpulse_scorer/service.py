"""Business logic of the scorer: plain functions on plain data (no I/O).

A batch of feature events becomes one frame, is scored by one model version in one XGBoost call
(probabilities over the whole batch; pred_contribs, TreeSHAP, for the rows explained at once), and turns into
score rows, catalog rows and score events; the other rows are explained where they are read (`explain_features`,
hubpulse_scorer.explanations). The catalog's latest stats come from the feature events themselves (they carry
the day's raw stats), so the scorer never reads another service's tables.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd
from pydantic_core import to_json

from hubpulse_common.encoding import EventEncoder
from hubpulse_common.events import ModelFeatures, ModelScore
from hubpulse_common.renames import Rename, current_name
from hubpulse_scorer.model.artifact import TrainedModel
from hubpulse_scorer.model.explain import contributions, top_columns

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
    "likes_7d",
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
    """One batch scored by one model version.

    `explanations[i]` is row i's top contributions as JSON text: a list of `Contribution` objects
    (feature, value, contribution), built once and reused by the scores row, the catalog row and the event;
    None for a row not explained at scoring time (its explanation is computed on demand).
    """

    events: list[ModelFeatures]
    version: str
    label: str
    horizon_days: int
    threshold: float
    probability: np.ndarray
    explanations: Sequence[str | None]


def under_current_names(events: Iterable[ModelFeatures], aliases: Mapping[str, Rename]) -> Iterator[ModelFeatures]:
    """Each event under the name its model has now: a late event of an old name dated before its rename is the
    renamed model's (hubpulse_common.renames.current_name)."""
    for event in events:
        name = current_name(event.model_id, event.snapshot_date, aliases)
        yield event if name == event.model_id else event.model_copy(update={"model_id": name})


def latest_per_model_day(events: Iterable[ModelFeatures]) -> list[ModelFeatures]:
    """One event per model-day; a later one (the day's final features after provisional ones) wins."""
    latest: dict[tuple[str, dt.date], ModelFeatures] = {}
    for event in events:
        latest[(event.model_id, event.snapshot_date)] = event
    return list(latest.values())


def day_models(events: Iterable[ModelFeatures]) -> dict[dt.date, int]:
    """Each day's size as the features close announced it (days it did not announce are left out)."""
    return {e.snapshot_date: e.day_models for e in events if e.day_models}


def features_matrix(events: Sequence[ModelFeatures], columns: Sequence[str]) -> np.ndarray:
    """The model's feature columns of each event (absent or null = NaN, which XGBoost treats as missing)."""
    return values_matrix([e.features for e in events], columns)


def values_matrix(features: Sequence[Mapping[str, float | None]], columns: Sequence[str]) -> np.ndarray:
    """`columns` of each row of features (absent or null = NaN)."""
    if not columns:
        return np.empty((len(features), 0), dtype="float64")
    pick = itemgetter(*columns)
    try:  # our features service sends every column: one C-level lookup of all of them per row
        rows = [pick(f) for f in features]
    except KeyError:
        rows = [tuple(f.get(c) for c in columns) for f in features]
    if len(columns) == 1:
        rows = [(r,) for r in rows]
    # None becomes NaN in a float array
    matrix: np.ndarray = np.array(rows, dtype="float64").reshape(len(features), len(columns))
    return matrix


def features_frame(events: Sequence[ModelFeatures], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame(features_matrix(events, columns), columns=list(columns))


def _explanations(names: list[str], x: np.ndarray, contribs: np.ndarray, top_n: int) -> list[str]:
    order = top_columns(contribs, top_n)
    value = np.take_along_axis(x, order, axis=1)
    value_cells = value.astype(object)
    value_cells[np.isnan(value)] = None
    contribution = np.take_along_axis(contribs, order, axis=1).astype("float64").tolist()
    label = np.asarray(names, dtype=object)[order].tolist()
    return [
        to_json(
            [{"feature": f, "value": v, "contribution": round(c, 6)} for f, v, c in zip(fs, vs, cs, strict=True)]
        ).decode()
        for fs, vs, cs in zip(label, value_cells.tolist(), contribution, strict=True)
    ]


def explain(model: TrainedModel, x: np.ndarray, top_n: int) -> list[str]:
    """The top signed contributions (TreeSHAP) of each row of `x` (the feature values as they arrived), as JSON
    text. A row's explanation does not depend on the other rows: one row alone gets what it gets in a batch."""
    columns = model.feature_columns
    if not len(x):  # XGBoost's pred_contribs of no rows is not a (0, features) matrix
        return []
    # what the booster sees; explanations show the values as they arrived
    return _explanations(columns, x, contributions(model.booster, x.astype("float32"), columns), top_n)


def explain_features(model: TrainedModel, features: Sequence[Mapping[str, float | None]], top_n: int) -> list[str]:
    """`explain` of stored feature rows (catalog_details.features), as the scorer explained them when scoring."""
    return explain(model, values_matrix(features, model.feature_columns), top_n)


def score(model: TrainedModel, events: Sequence[ModelFeatures], top_n: int, *, picks_only: bool = False) -> Scored:
    """Calibrated probabilities of every event by `model`, and the top signed contributions of every event, or
    with `picks_only` of the events at or above the model's threshold (the others' explanations are None)."""
    columns = model.feature_columns
    x = features_matrix(events, columns)
    x32 = x.astype("float32")  # what the booster sees
    probability = model.predict_proba(pd.DataFrame(x32, columns=list(columns), copy=False))
    explanations: Sequence[str | None]
    if picks_only:
        explained = np.flatnonzero(probability >= model.metadata.threshold)
        explanations = [None] * len(events)
        for i, text in zip(explained.tolist(), explain(model, x[explained], top_n), strict=True):
            explanations[i] = text
    else:
        explanations = list(explain(model, x, top_n))
    meta = model.metadata
    return Scored(
        events=list(events),
        version=meta.version,
        label=str(meta.label.get("label", "trending")),
        horizon_days=int(meta.label.get("horizon", 7)),
        threshold=float(meta.threshold),
        probability=probability,
        explanations=explanations,
    )


def score_records(scored: Scored) -> list[Record]:
    return [
        (
            e.snapshot_date,
            e.model_id,
            scored.version,
            scored.label,
            scored.horizon_days,
            p,
            scored.threshold,
            explanation,
            e.provisional,
        )
        for e, p, explanation in zip(scored.events, scored.probability.tolist(), scored.explanations, strict=True)
    ]


def catalog_records(scored: Scored) -> tuple[list[Record], list[Record]]:
    """(catalog rows, catalog_daily rows) of a scored batch, one of each per model-day; JSON columns as text."""
    probability = scored.probability.tolist()
    daily: list[Record] = []
    models: list[Record] = []
    for e, p, explanation in zip(scored.events, probability, scored.explanations, strict=True):
        daily.append((e.model_id, e.snapshot_date, e.downloads or 0, e.likes or 0, e.trending_rank, p, scored.version))
        likes_7d = e.features.get("likes_7d")
        models.append(
            (
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
                p,
                scored.version,
                scored.label,
                scored.threshold,
                likes_7d if likes_7d is not None and np.isfinite(likes_7d) else None,
                explanation,
                to_json(e.features, inf_nan_mode="null").decode(),
            )
        )
    return models, daily


# A score not explained at scoring time has no top_features in its event (ModelScore.top_features says so).
_NOT_EXPLAINED = "[]"


def score_payloads(scored: Scored) -> list[tuple[bytes, bytes]]:
    """ModelScore of each row as (key, JSON) pairs, encoded in bulk (tests/scorer check they validate)."""
    # the explanation is already JSON: spliced in, not parsed and encoded again
    encode = EventEncoder(ModelScore, raw=("top_features",)).encode
    probability = scored.probability.tolist()
    return [
        (
            e.model_id.encode(),
            encode(
                {
                    "model_id": e.model_id,
                    "snapshot_date": e.snapshot_date,
                    "model_version": scored.version,
                    "label": scored.label,
                    "horizon_days": scored.horizon_days,
                    "probability": p,
                    "threshold": scored.threshold,
                },
                _NOT_EXPLAINED if explanation is None else explanation,
            ),
        )
        for e, p, explanation in zip(scored.events, probability, scored.explanations, strict=True)
    ]
