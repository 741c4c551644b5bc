"""Training: labelled feature rows -> an XGBoost booster, Platt-calibrated, with its operating threshold.

A first booster is fitted on the older part of the training rows; the newest `validation_fraction` of days
(after a horizon-long gap, so no label overlaps) calibrates its probabilities and picks the threshold. A second
booster is then fitted on every training row (the newest days included) and the model is the two averaged,
with the calibration and threshold carried over (see `refit_and_average`). The test period of a backtest never
reaches this module.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_recall_curve

from hubpulse_common.errors import InputError
from hubpulse_common.features import (
    FEATURE_COLUMNS,
    HISTORY_WINDOW_DAYS,
    LEVEL_FEATURES,
    compute_features,
    compute_features_at,
)
from hubpulse_scorer.model.artifact import ModelMetadata, TrainedModel
from hubpulse_scorer.model.labels import LabelConfig, make_labels

Progress = Callable[[str], None]

# The decayed likes score against the day's top K of the trending list: for the trending label only (they
# helped trending and hurt surge on nested folds: docs/decisions/model.md).
TRENDING_ONLY_FEATURES: frozenset[str] = frozenset(
    {"likes_decay_order", "likes_decay_gap_top10", "likes_decay_gap_rank10", "likes_catchup_top10"}
)


def model_features(label: str) -> list[str]:
    """The FEATURE_COLUMNS a model of this label is trained on (recorded in its metadata).

    Both labels use the scale-free features: the surge label's absolute threshold (+1000 downloads) is
    encoded relative to the model's own counts (surge_gap_*, the projection against both thresholds).
    The gaps to the day's top K of the trending list are for the trending label only.
    """
    return [
        c
        for c in FEATURE_COLUMNS
        if c not in LEVEL_FEATURES and (label == "trending" or c not in TRENDING_ONLY_FEATURES)
    ]


# build_dataset's default chunk: this many kept rows' features computed at a time (one chunk below it).
CHUNK_ROWS = 500_000


@dataclass(frozen=True)
class TrainConfig:
    labels: LabelConfig = field(default_factory=LabelConfig)
    seed: int = 0
    # chosen on nested folds only: docs/decisions/model.md "XGBoost"
    n_rounds: int = 150
    learning_rate: float = 0.05
    # Shallow: labels on these histories come from few, simple interactions (rank near K and recently
    # better; run rate above the rolling count); depth 4 overfit the early days in nested validation.
    max_depth: int = 2
    min_child_weight: float = 2.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    nthread: int = 2
    validation_fraction: float = 0.25
    # Negatives beyond this many are subsampled, each kept one weighted 1/rate so totals stay unbiased.
    max_negatives: int = 2_000_000
    min_train_positives: int = 20
    min_validation_positives: int = 5
    # Operating threshold: the operating point (precision >= 0.47 at recall >= 0.50), met with the most
    # room on the validation slice (see operating_threshold).
    min_recall: float = 0.5
    min_precision: float = 0.47
    # Compute features this many target days at a time (bounds memory); None = about CHUNK_ROWS kept rows a chunk.
    chunk_days: int | None = None
    # Time-feature grids are built this many models at a time (bounds memory on a 2M-model Hub).
    block_models: int = 100_000


@dataclass
class Dataset:
    frame: pd.DataFrame  # key columns + FEATURE_COLUMNS
    label: np.ndarray  # 0.0 / 1.0
    weight: np.ndarray  # 1.0, or 1/rate for subsampled negatives


def _quiet(_: str) -> None:
    return None


def history_hash(history: pd.DataFrame) -> str:
    """Content hash of a history frame (order-sensitive), recorded in the model metadata."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(history, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def build_dataset(
    history: pd.DataFrame,
    config: TrainConfig,
    *,
    subsample_before: pd.Timestamp | None = None,
    progress: Progress = _quiet,
) -> Dataset:
    """Labelled feature rows of `history` (rows with an undefined label are left out).

    Negatives dated before `subsample_before` (all, when None) are subsampled down to
    `config.max_negatives`; rows on or after it (a backtest's test period) are all kept.
    """
    progress("labelling")
    labels = make_labels(history, config.labels)
    dates = history["snapshot_date"].to_numpy(dtype="datetime64[ns]")
    labelled = ~np.isnan(labels)
    pool = labelled & (labels == 0)
    if subsample_before is not None:
        pool &= dates < np.datetime64(subsample_before, "ns")
    rate = min(1.0, config.max_negatives / max(int(pool.sum()), 1))
    dropped = pool & (np.random.default_rng(config.seed).random(len(history)) >= rate)
    keep = labelled & ~dropped
    weight = np.where(pool, 1.0 / rate, 1.0)

    taken = np.flatnonzero(keep)
    if len(taken) == 0:
        return Dataset(frame=compute_features(history.iloc[:0]), label=np.zeros(0), weight=np.zeros(0))
    # features only for the kept rows (compute_features_at: the same values as compute_features, blocked by model)
    days = np.unique(dates[keep])
    # About CHUNK_ROWS kept rows per chunk unless set: the values are the same (tested), the transient grids are
    # one chunk's (peak memory by chunk count: docs/decisions/model.md)
    chunk = config.chunk_days or max(1, int(len(days) * CHUNK_ROWS / len(taken)))
    parts: list[pd.DataFrame] = []
    for i in range(0, len(days), chunk):
        first, last = days[i], days[min(i + chunk, len(days)) - 1]
        progress(f"features {pd.Timestamp(first).date()}..{pd.Timestamp(last).date()}")
        window = np.flatnonzero((dates > first - np.timedelta64(HISTORY_WINDOW_DAYS, "D")) & (dates <= last))
        target = keep[window] & (dates[window] >= first)
        parts.append(compute_features_at(history.iloc[window], np.flatnonzero(target)))
    frame = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
    return Dataset(frame=frame, label=labels[taken], weight=weight[taken])


def build_dataset_streaming(
    days: Iterable[pd.DataFrame], config: TrainConfig, *, negative_rate: float, progress: Progress = _quiet
) -> Dataset:
    """`build_dataset` for a Hub too large to hold: `days` yields one complete day at a time, in date order.

    Only HISTORY_WINDOW_DAYS + chunk_days + horizon days are held at once; negatives are kept with
    probability `negative_rate` (weight 1/rate), fixed up front because the total is not known yet.
    """
    chunk = config.chunk_days or 7
    back, ahead = HISTORY_WINDOW_DAYS - 1, config.labels.horizon
    rng = np.random.default_rng(config.seed)
    held: list[pd.DataFrame] = []  # consecutive days; held[0] is day `offset` of the stream
    offset, start = 0, 0  # `start`: first target day not yet turned into rows
    frames: list[pd.DataFrame] = []
    labels: list[np.ndarray] = []
    weights: list[np.ndarray] = []

    def flush(end: int) -> None:  # target days start..end (inclusive)
        part = pd.concat(held[max(start - back, offset) - offset :], ignore_index=True)
        day_index = (part["snapshot_date"] - held[start - offset]["snapshot_date"].iloc[0]).dt.days.to_numpy()
        target = (day_index >= 0) & (day_index <= end - start)
        y = make_labels(part, config.labels)[target]  # the whole window's labels are not kept past this line
        progress(f"features for days {start}..{end}")
        keep = ~np.isnan(y) & ((y == 1) | (rng.random(len(y)) < negative_rate))
        # features of the kept rows only, computed in blocks of models (same values as compute_features)
        # the days after `end` (there for the labels only) are left out: part is in day order, so a prefix
        upto = int(np.searchsorted(day_index, end - start, side="right"))
        frames.append(
            compute_features_at(part.iloc[:upto], np.flatnonzero(target)[keep], block_models=config.block_models)
        )
        del part
        labels.append(y[keep])
        weights.append(np.where(y[keep] == 1, 1.0, 1.0 / negative_rate))

    for day in days:
        held.append(day)
        last = offset + len(held) - 1
        if last - ahead >= start + chunk - 1:
            flush(start + chunk - 1)
            start += chunk
            drop = max(start - back - offset, 0)
            held, offset = held[drop:], offset + drop
    last = offset + len(held) - 1
    if start <= last - ahead:
        flush(last - ahead)
    if not frames:
        return Dataset(frame=compute_features(pd.DataFrame()), label=np.zeros(0), weight=np.zeros(0))
    return Dataset(
        frame=pd.concat(frames, ignore_index=True), label=np.concatenate(labels), weight=np.concatenate(weights)
    )


def operating_threshold(
    y: np.ndarray, proba: np.ndarray, weight: np.ndarray, min_recall: float, min_precision: float
) -> float:
    """The validation threshold farthest inside the target region precision >= min_precision, recall >= min_recall.

    Each threshold's slack on either target is counted in standard errors (binomial, on the validation
    positives for recall and on the predicted positives for precision) and the threshold whose smaller slack
    is the largest wins: the centre of the feasible thresholds, so a shift of the score distribution between
    validation and later days does not push either metric off its target first; with no feasible threshold,
    the one that misses least. Called on the validation slice only, never on test.
    """
    precision, recall, thresholds = precision_recall_curve(y, proba, sample_weight=weight)
    precision, recall = precision[:-1], recall[:-1]  # the last point (recall 0) has no threshold
    positives = max(float(np.asarray(weight)[np.asarray(y) == 1].sum()), 1e-12)
    predicted = recall * positives / np.maximum(precision, 1e-12)  # true positives / precision
    # variances floored so that a target of exactly 0 or 1 stays defined (any shortfall is then -inf-like)
    var_p, var_r = max(min_precision * (1 - min_precision), 1e-12), max(min_recall * (1 - min_recall), 1e-12)
    z_precision = (precision - min_precision) / np.sqrt(var_p / np.maximum(predicted, 1.0))
    z_recall = (recall - min_recall) / np.sqrt(var_r / positives)
    slack = np.minimum(z_precision, z_recall)
    best = np.flatnonzero(slack == slack.max())
    # ties (a target met exactly everywhere, e.g. recall 1): the most room on the other target, then more recall
    other = np.maximum(z_precision, z_recall)[best]
    best = best[other == other.max()]
    return float(thresholds[best[np.argmax(recall[best])]])


def _check_positives(n_fit: int, n_val: int, config: TrainConfig) -> None:
    if n_fit < config.min_train_positives or n_val < config.min_validation_positives:
        raise InputError(
            f"too few positives to train the {config.labels.label} model: {n_fit} in the training slice and "
            f"{n_val} in the validation slice (need {config.min_train_positives} and "
            f"{config.min_validation_positives}); use a longer history or a looser label "
            "(--horizon, --top-k); nothing was trained or registered"
        )


def _day(ts: Any) -> str:
    return str(pd.Timestamp(ts).date())


# Below this many training rows XGBoost runs on one thread: histogram building on tens of thousands of rows
# is too short to amortise OpenMP synchronisation (on the shared 2-core machine, 300 rounds on the 65k rows of
# transformersjs took 1.6 s on one thread and 9.3 s on two), and the booster is the same (tests/model).
SINGLE_THREAD_ROWS = 1_000_000


def _xgb_params(config: TrainConfig, scale_pos_weight: float, n_rows: int | None = None) -> dict[str, Any]:
    nthread = 1 if n_rows is not None and n_rows < SINGLE_THREAD_ROWS else config.nthread
    return {
        "objective": "binary:logistic",
        "eval_metric": "aucpr",
        "tree_method": "hist",
        "max_depth": config.max_depth,
        "learning_rate": config.learning_rate,
        "min_child_weight": config.min_child_weight,
        "subsample": config.subsample,
        "colsample_bytree": config.colsample_bytree,
        "scale_pos_weight": scale_pos_weight,
        "nthread": nthread,
        "seed": config.seed,
    }


def _fit_booster(
    x: np.ndarray, labels: np.ndarray, weight: np.ndarray, config: TrainConfig, columns: list[str]
) -> tuple[xgb.Booster, dict[str, Any]]:
    """One booster on these rows, and its parameters.

    scale_pos_weight is the sqrt of the class ratio: it lifts the rare class without letting a handful of
    positives dominate; calibration undoes the resulting probability shift.
    """
    pos_w = float(weight[labels == 1].sum())
    neg_w = float(weight[labels == 0].sum())
    params = _xgb_params(config, float(np.sqrt(neg_w / pos_w)), len(labels))
    data = xgb.QuantileDMatrix(x, label=labels, weight=weight, missing=np.nan, feature_names=columns)
    return xgb.train(params, data, num_boost_round=config.n_rounds), params


def merge_boosters(first: xgb.Booster, second: xgb.Booster) -> xgb.Booster:
    """One booster holding the trees of both (and `first`'s base score): margin = m_first + m_second - base_second.

    The artifact, the scorer and the explanations keep a single booster; its SHAP values are the two boosters'
    summed (XGBoost's own `pred_contribs` on the merged trees).
    """
    merged = json.loads(bytes(first.save_raw("json")))
    trees = merged["learner"]["gradient_booster"]["model"]
    extra = json.loads(bytes(second.save_raw("json")))["learner"]["gradient_booster"]["model"]
    n = len(trees["trees"])
    for i, tree in enumerate(extra["trees"]):
        tree["id"] = n + i
    trees["trees"] += extra["trees"]
    trees["tree_info"] += extra["tree_info"]
    trees["iteration_indptr"] += [n + k for k in extra["iteration_indptr"][1:]]
    trees["gbtree_model_param"]["num_trees"] = str(len(trees["trees"]))
    booster = xgb.Booster()
    booster.load_model(bytearray(json.dumps(merged).encode()))
    return booster


def refit_and_average(
    first: xgb.Booster,
    platt: tuple[float, float],
    threshold: float,
    x: np.ndarray,
    labels: np.ndarray,
    weight: np.ndarray,
    fit: np.ndarray,
    config: TrainConfig,
    columns: list[str],
) -> tuple[xgb.Booster, tuple[float, float]]:
    """Average `first` (fitted on the `fit` rows) with a booster fitted on every training row; calibration carried over.

    The newest days (the validation slice and the gap before it) are the closest to the days the model will score,
    but once a booster has seen them they cannot calibrate it. So the Platt map and the threshold stay those
    chosen on the validation slice with `first`, and are carried over by rank: the averaged model flags the same
    share of the `fit` rows (seen by both boosters) as `first` did at the threshold, and the Platt slope is halved
    because the merged margin sums two boosters. Chosen on nested folds, against refitting alone (which moved the
    threshold off the operating point) and other variants: docs/decisions/model.md "Refit and average".
    """
    second, _ = _fit_booster(x, labels, weight, config, columns)
    merged = merge_boosters(first, second)
    a, b = platt
    t = min(max(threshold, 1e-12), 1 - 1e-12)
    logit = float(np.log(t / (1 - t)))
    dref = xgb.DMatrix(x[fit], missing=np.nan, feature_names=columns)
    share = float((first.predict(dref, output_margin=True) >= (logit - b) / a).mean())
    cut = float(np.quantile(np.asarray(merged.predict(dref, output_margin=True), dtype="float64"), 1 - share))
    return merged, (a / 2, logit - a / 2 * cut)


def train(
    features: pd.DataFrame,
    labels: np.ndarray,
    config: TrainConfig,
    *,
    weight: np.ndarray | None = None,
    data_hash: str | None = None,
    progress: Progress = _quiet,
) -> TrainedModel:
    """Fit, calibrate and pick the threshold. `features` holds snapshot_date and FEATURE_COLUMNS."""
    labels = np.asarray(labels, dtype="float64")
    w = np.ones(len(labels)) if weight is None else np.asarray(weight, dtype="float64")
    dates = features["snapshot_date"].to_numpy(dtype="datetime64[ns]")
    days = np.unique(dates)
    if len(days) < 2:
        _check_positives(0, 0, config)
    val_start = days[min(int(len(days) * (1 - config.validation_fraction)), len(days) - 1)]
    fit = dates < val_start - np.timedelta64(config.labels.horizon, "D")
    val = dates >= val_start
    _check_positives(int(labels[fit].sum()), int(labels[val].sum()), config)

    columns = model_features(config.labels.label)
    x = features[columns].to_numpy(dtype="float32", na_value=np.nan)
    progress(f"fitting XGBoost on {int(fit.sum()):,} rows")
    booster, params = _fit_booster(x[fit], labels[fit], w[fit], config, columns)

    progress("calibrating on the validation slice")
    dval = xgb.DMatrix(x[val], missing=np.nan, feature_names=columns)
    margin = np.asarray(booster.predict(dval, output_margin=True), dtype="float64")
    del dval
    platt = LogisticRegression(C=1e4, max_iter=1000)
    platt.fit(margin.reshape(-1, 1), labels[val], sample_weight=w[val])
    a, b = float(platt.coef_[0, 0]), float(platt.intercept_[0])
    proba = 1.0 / (1.0 + np.exp(-(a * margin + b)))
    threshold = operating_threshold(labels[val], proba, w[val], config.min_recall, config.min_precision)

    progress(f"refitting XGBoost on all {len(labels):,} training rows")
    booster, (a, b) = refit_and_average(booster, (a, b), threshold, x, labels, w, fit, config, columns)

    now = dt.datetime.now(dt.UTC)
    data_hash = data_hash or history_hash(features[["snapshot_date", "model_id"]])
    metadata = ModelMetadata(
        version=f"{now:%Y%m%dT%H%M%SZ}-{data_hash[:8]}",
        label=asdict(config.labels),
        feature_columns=columns,
        training_window=[_day(dates[fit].min()), _day(dates[fit].max())],
        validation_window=[_day(dates[val].min()), _day(dates[val].max())],
        data_hash=data_hash,
        threshold=threshold,
        platt=[a, b],
        params=params | {"num_boost_round": config.n_rounds},
        created_at=now.isoformat(timespec="seconds"),
        extra={"refit_window": [_day(dates.min()), _day(dates.max())]},
    )
    return TrainedModel(booster=booster, metadata=metadata)


def train_from_history(
    history: pd.DataFrame,
    config: TrainConfig,
    *,
    backtest: dict[str, Any] | None = None,
    progress: Progress = _quiet,
) -> TrainedModel:
    """Train on every labelled day of `history` (the `hubpulse train` core; the registry stores the result)."""
    data = build_dataset(history, config, progress=progress)
    model = train(
        data.frame, data.label, config, weight=data.weight, data_hash=history_hash(history), progress=progress
    )
    if backtest is not None:
        model.metadata = replace(model.metadata, backtest=backtest)
    return model
