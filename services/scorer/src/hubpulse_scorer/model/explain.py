"""Per-row explanations from XGBoost's own SHAP values (`pred_contribs`), in log-odds of the raw model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xgboost as xgb

Contribution = dict[str, float | str]


def top_contributions(
    booster: xgb.Booster, x: np.ndarray, feature_names: Sequence[str], top_n: int = 5
) -> list[list[Contribution]]:
    """For each row, the `top_n` features with the largest |contribution|, signed, largest first.

    A positive contribution pushes the trend probability up. Values are on the model's margin
    (log-odds) scale; calibration is monotone, so signs and order carry over to the probability.
    """
    contribs = booster.predict(xgb.DMatrix(x, missing=np.nan, feature_names=list(feature_names)), pred_contribs=True)[
        :, :-1
    ]  # the last column is the bias term, not a feature
    n = min(top_n, contribs.shape[1])
    order = np.argsort(-np.abs(contribs), axis=1, kind="stable")[:, :n]
    values = np.take_along_axis(contribs, order, axis=1)
    names = np.asarray(feature_names, dtype=object)[order]
    return [
        [{"feature": str(f), "contribution": round(float(v), 6)} for f, v in zip(fs, vs, strict=True)]
        for fs, vs in zip(names, values, strict=True)
    ]
