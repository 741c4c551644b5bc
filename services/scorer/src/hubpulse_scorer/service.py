"""Business logic of the scorer: plain functions on plain data (no I/O).

A batch of `hub.features.v3` messages becomes one set of columns (`FeatureRows`: no object per row), is scored by
one model version in one XGBoost call (probabilities over the whole batch; pred_contribs, TreeSHAP, for the rows
explained at once), and turns into score rows, catalog rows and score events; the other rows are explained where
they are read (`explain_features`, hubpulse_scorer.explanations). The catalog's latest stats come from the feature
messages themselves (they carry the day's raw stats), so the scorer never reads another service's tables.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd
from pydantic_core import to_json

from hubpulse_common import feature_vectors
from hubpulse_common.encoding import EventEncoder, bounded_messages, json_dates, json_floats, json_strings, runs_of
from hubpulse_common.events import (
    BATCH_ROW_COLUMNS,
    SCORES_BATCH_BYTES,
    SCORES_BATCH_ROWS,
    ModelFeaturesPacked,
    ModelScore,
    ModelScoresBatch,
)
from hubpulse_common.feature_vectors import FeatureSet
from hubpulse_common.kafka import partition_slots
from hubpulse_common.renames import Rename, current_name, renames_in_messages
from hubpulse_scorer.model.artifact import TrainedModel
from hubpulse_scorer.model.explain import contributions, top_columns

Record = tuple[Any, ...]

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
    "feature_set",  # the key of the names `features` follows (hubpulse_common.feature_vectors)
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
class FeatureRows:
    """Model-days column by column (the rows of one or more `hub.features.v3` messages): entry `i` of every column
    and row `i` of `values` are the `i`-th model-day. `values` holds the features named in `names` (float64,
    NaN = null or absent). Columns in the catalog's order (CATALOG_COLUMNS)."""

    model_id: list[str]
    author: list[str | None]
    pipeline_tag: list[str | None]
    library_name: list[str | None]
    tags: list[list[str]]
    created_at: list[dt.datetime | None]
    last_modified: list[dt.datetime | None]
    snapshot_date: list[dt.date]
    downloads: list[int | None]
    downloads_all_time: list[int | None]
    likes: list[int | None]
    trending_rank: list[int | None]
    names: tuple[str, ...]
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.model_id)

    def take(self, index: Sequence[int] | slice) -> FeatureRows:
        """The rows at `index` (positions, or a slice), in that order."""
        if isinstance(index, slice):
            pick: Callable[[list[Any]], list[Any]] = itemgetter(index)
        else:
            positions = list(index)
            pick = lambda column: [column[i] for i in positions]  # noqa: E731
        lists = {f.name: pick(getattr(self, f.name)) for f in fields(self) if f.name not in ("names", "values")}
        return FeatureRows(**lists, names=self.names, values=self.values[index])

    def matrix(self, columns: Sequence[str]) -> np.ndarray:
        """`columns` of each row (one absent from the rows: all NaN), as float64."""
        at = {name: j for j, name in enumerate(self.names)}
        out = np.full((len(self), len(columns)), np.nan)
        for k, name in enumerate(columns):
            if (j := at.get(name)) is not None:
                out[:, k] = self.values[:, j]
        return out

    def column(self, name: str) -> list[float | None]:
        """One feature of each row (None: null or absent)."""
        values = self.matrix([name])[:, 0]
        cells = values.astype(object)
        cells[~np.isfinite(values)] = None
        out: list[float | None] = cells.tolist()
        return out

    @property
    def feature_set(self) -> FeatureSet:
        return FeatureSet(self.names)

    def feature_vectors(self) -> list[bytes]:
        """Each row's features as the catalog stores them (`feature_vectors.encode`: missing = NaN)."""
        return feature_vectors.encode(self.values)


def feature_rows(messages: Sequence[ModelFeaturesPacked]) -> FeatureRows:
    """The rows of `messages` in order, column by column (a feature one message lacks is NaN in its rows)."""
    names = tuple(dict.fromkeys(name for m in messages for name in m.features))
    blocks = []
    for m in messages:
        if tuple(m.features) == names:  # the usual message: every feature, in the batch's order
            blocks.append(m.feature_matrix().T)
            continue
        block = np.full((len(names), m.rows), np.nan)
        for j, name in enumerate(names):
            if name in m.features:
                block[j] = m.feature_values(name)
        blocks.append(block.T)
    columns: dict[str, list[Any]] = {
        c: [v for m in messages for v in getattr(m, c)] for c in ("model_id", *BATCH_ROW_COLUMNS)
    }
    return FeatureRows(
        **columns,
        snapshot_date=[m.snapshot_date for m in messages for _ in range(m.rows)],
        names=names,
        values=np.concatenate(blocks) if blocks else np.empty((0, 0)),
    )


def renames_of(messages: Iterable[ModelFeaturesPacked]) -> list[Rename]:
    """The renames the messages mark (hubpulse_common.renames.renames_in)."""
    return renames_in_messages(messages)


@dataclass(frozen=True)
class Scored:
    """One batch scored by one model version.

    `explanations[i]` is row i's top contributions as JSON text: a list of `Contribution` objects
    (feature, value, contribution), built once and reused by the catalog row and the event;
    None for a row not explained at scoring time (its explanation is computed on demand).
    """

    rows: FeatureRows
    version: str
    label: str
    horizon_days: int
    threshold: float
    probability: np.ndarray
    explanations: Sequence[str | None]


def under_current_names(rows: FeatureRows, aliases: Mapping[str, Rename]) -> FeatureRows:
    """The rows under the names their models have now: a late row of an old name dated before its rename is the
    renamed model's (hubpulse_common.renames.current_name)."""
    if not aliases:
        return rows
    names = [current_name(m, d, aliases) for m, d in zip(rows.model_id, rows.snapshot_date, strict=True)]
    return replace(rows, model_id=names)


def latest_per_model_day(rows: FeatureRows) -> FeatureRows:
    """One row per model-day; a later one (a later message of the batch: a redelivery, a day closed again) wins,
    at the place of the first."""
    latest = {key: i for i, key in enumerate(zip(rows.model_id, rows.snapshot_date, strict=True))}
    if len(latest) == len(rows):
        return rows
    return rows.take(list(latest.values()))


def day_models(messages: Iterable[ModelFeaturesPacked]) -> dict[dt.date, int]:
    """Each day's size as the features close announced it (days it did not announce are left out)."""
    return {m.snapshot_date: m.day_models for m in messages if m.day_models}


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


def score(model: TrainedModel, rows: FeatureRows, top_n: int, *, picks_only: bool = False) -> Scored:
    """Calibrated probabilities of every row by `model`, and the top signed contributions of every row, or
    with `picks_only` of the rows at or above the model's threshold (the others' explanations are None)."""
    columns = model.feature_columns
    x = rows.matrix(columns)
    x32 = x.astype("float32")  # what the booster sees
    probability = model.predict_proba(pd.DataFrame(x32, columns=list(columns), copy=False))
    explanations: Sequence[str | None]
    if picks_only:
        explained = np.flatnonzero(probability >= model.metadata.threshold)
        explanations = [None] * len(rows)
        for i, text in zip(explained.tolist(), explain(model, x[explained], top_n), strict=True):
            explanations[i] = text
    else:
        explanations = list(explain(model, x, top_n))
    meta = model.metadata
    return Scored(
        rows=rows,
        version=meta.version,
        label=str(meta.label.get("label", "trending")),
        horizon_days=int(meta.label.get("horizon", 7)),
        threshold=float(meta.threshold),
        probability=probability,
        explanations=explanations,
    )


def _zero_for_null(values: list[int | None]) -> list[int]:
    return [v or 0 for v in values]


def catalog_records(scored: Scored) -> tuple[list[Record], list[Record]]:
    """(catalog rows, catalog_daily rows) of a scored batch, one of each per model-day; JSON columns as text."""
    rows = scored.rows
    probability = scored.probability.tolist()
    version, label, threshold = scored.version, scored.label, scored.threshold
    downloads, likes = _zero_for_null(rows.downloads), _zero_for_null(rows.likes)
    n = len(rows)
    # zip builds each tuple in C: no per-row Python (a constant column is a list of its one value)
    daily: list[Record] = list(
        zip(
            rows.model_id,
            rows.snapshot_date,
            downloads,
            likes,
            rows.trending_rank,
            probability,
            [version] * n,
            strict=True,
        )
    )
    models: list[Record] = list(
        zip(
            rows.model_id,
            rows.author,
            rows.pipeline_tag,
            rows.library_name,
            rows.tags,
            rows.created_at,
            rows.last_modified,
            rows.snapshot_date,
            downloads,
            rows.downloads_all_time,
            likes,
            rows.trending_rank,
            rows.column("growth_rate_7d"),
            probability,
            [version] * n,
            [label] * n,
            [threshold] * n,
            rows.column("likes_7d"),
            scored.explanations,
            [rows.feature_set.key] * n,
            rows.feature_vectors(),
            strict=True,
        )
    )
    return models, daily


# A score not explained at scoring time has no top_features in its event (ModelScore.top_features says so).
_NOT_EXPLAINED = "[]"


def _version_fields(scored: Scored) -> dict[str, Any]:
    """What every score of a batch shares: the model version that scored it, and that version's label, horizon and
    threshold."""
    return {
        "model_version": scored.version,
        "label": scored.label,
        "horizon_days": scored.horizon_days,
        "threshold": scored.threshold,
    }


def score_messages(scored: Scored, partitions: int) -> list[tuple[bytes, bytes]]:
    """The scores as `hub.scores.v2` messages, (key, JSON) pairs: one day's and one partition's models a message
    (the partition the default partitioner gives each model id among `partitions`, as v1's key; the first model id
    is the message's key, which maps there too), in the batch's order within it, up to SCORES_BATCH_ROWS rows and
    SCORES_BATCH_BYTES bytes each. Column-wise: one encode per message (tests/scorer check they validate back to
    the v1 events)."""
    rows = scored.rows
    if not len(rows):
        return []
    days = sorted(set(rows.snapshot_date))
    day_of = {day: i for i, day in enumerate(days)}
    day_codes = np.fromiter((day_of[d] for d in rows.snapshot_date), dtype=np.int64, count=len(rows))
    slots = partition_slots([m.encode() for m in rows.model_id], partitions)
    order = np.lexsort((slots, day_codes))  # by day, then partition; stable: the batch's order within each
    ids = [rows.model_id[i] for i in order.tolist()]
    day_codes = day_codes[order]
    probability = scored.probability[order]
    explained = [_NOT_EXPLAINED if (e := scored.explanations[i]) is None else e for i in order.tolist()]
    encode = EventEncoder(ModelScoresBatch, raw=("top_features",)).encode
    shared = _version_fields(scored)

    def message(lo: int, hi: int) -> tuple[bytes, bytes]:
        part = ids[lo:hi]
        fields = shared | {
            "snapshot_date": days[day_codes[lo]].isoformat(),
            "model_id": part,
            "probability": probability[lo:hi],
        }
        return part[0].encode(), encode(fields, f"[{','.join(explained[lo:hi])}]")

    return bounded_messages(
        runs_of(day_codes * partitions + slots[order]),
        message,
        max_rows=SCORES_BATCH_ROWS,
        max_bytes=SCORES_BATCH_BYTES,
        row_name=lambda i: f"the score of {ids[i]!r}",
    )


def score_payloads(scored: Scored) -> list[tuple[bytes, bytes]]:
    """ModelScore of each row as (key, JSON) pairs, encoded in bulk (tests/scorer check they validate)."""
    rows = scored.rows
    constants = _version_fields(scored)
    columns = {
        "model_id": json_strings(rows.model_id),
        "snapshot_date": json_dates(rows.snapshot_date),
        "probability": json_floats(scored.probability),
    }
    # the explanation is already JSON: spliced in, not parsed and encoded again
    explained = [_NOT_EXPLAINED if e is None else e for e in scored.explanations]
    values = EventEncoder(ModelScore, raw=("top_features",)).encode_columns(constants, columns, explained)
    return list(zip([m.encode() for m in rows.model_id], values, strict=True))
