"""Per-row explanations from XGBoost's own SHAP values (`pred_contribs`), in log-odds of the raw model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xgboost as xgb

Contribution = dict[str, float | str]


def contributions(booster: xgb.Booster, x: np.ndarray, feature_names: Sequence[str]) -> np.ndarray:
    """SHAP contributions (rows x features) of a float32 matrix; the bias column is dropped."""
    dm = xgb.DMatrix(x, missing=np.nan, feature_names=list(feature_names))
    out: np.ndarray = booster.predict(dm, pred_contribs=True)[:, :-1]
    return out


def top_columns(contribs: np.ndarray, top_n: int) -> np.ndarray:
    """Column indices of each row's `top_n` largest |contribution|, largest first, ties in column order.

    Same result as a stable argsort of -|contribs| cut to `top_n`, but O(features) per row
    (`np.argpartition`); rows with a tie across the cut (e.g. several zero contributions) take the
    stable sort, so which of the tied features is kept is still the lowest column.
    """
    n = min(top_n, contribs.shape[1])
    if n == 0 or len(contribs) == 0:
        return np.zeros((len(contribs), n), dtype=np.intp)
    magnitude = -np.abs(contribs)
    if n == contribs.shape[1]:
        return np.argsort(magnitude, axis=1, kind="stable")
    part = np.argpartition(magnitude, n - 1, axis=1)[:, :n]
    picked = np.take_along_axis(magnitude, part, axis=1)
    # stable order inside the top n: by magnitude, then column index
    order = np.lexsort((part, picked), axis=1)
    top = np.take_along_axis(part, order, axis=1)
    cut = np.take_along_axis(magnitude, top[:, -1:], axis=1)
    tied = np.flatnonzero((magnitude <= cut).sum(axis=1) > n)
    if len(tied):
        top[tied] = np.argsort(magnitude[tied], axis=1, kind="stable")[:, :n]
    return top


def top_contributions(
    booster: xgb.Booster, x: np.ndarray, feature_names: Sequence[str], top_n: int = 5
) -> list[list[Contribution]]:
    """For each row, the `top_n` features with the largest |contribution|, signed, largest first.

    A positive contribution pushes the trend probability up. Values are on the model's margin
    (log-odds) scale; calibration is monotone, so signs and order carry over to the probability.
    """
    contribs = contributions(booster, x, feature_names)
    order = top_columns(contribs, top_n)
    values = np.take_along_axis(contribs, order, axis=1)
    names = np.asarray(feature_names, dtype=object)[order]
    return [
        [{"feature": str(f), "contribution": round(float(v), 6)} for f, v in zip(fs, vs, strict=True)]
        for fs, vs in zip(names, values, strict=True)
    ]
