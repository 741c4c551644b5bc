"""The CONTRACT labels, computed on a (models x calendar days) grid like the features.

Each function returns a float label per history row (1.0 / 0.0), NaN where the label is undefined:
its horizon runs past the last day of the history, its inputs are missing, or (trending) the model is
already inside the top K on day t, so there is nothing to predict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from hubpulse_common.errors import InputError
from hubpulse_common.history import has_trending_ranks

LabelName = Literal["trending", "surge"]


@dataclass(frozen=True)
class LabelConfig:
    label: LabelName = "trending"
    horizon: int = 7
    top_k: int = 10
    surge_ratio: float = 2.0
    surge_min_delta: float = 1000.0


def _grid(history: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dates = history["snapshot_date"].to_numpy(dtype="datetime64[D]")
    day = (dates - dates.min()).astype("int64")
    codes, models = pd.factorize(history["model_id"])
    g = np.full((len(models), int(day.max()) + 1), np.nan)
    g[codes, day] = history[column].to_numpy(dtype="float64", na_value=np.nan)
    return g, codes, day


def trending_labels(history: pd.DataFrame, *, top_k: int = 10, horizon: int = 7) -> np.ndarray:
    """1 when the model is outside the top K on day t and inside it on any of t+1..t+horizon."""
    if not has_trending_ranks(history):
        raise InputError("the trending label needs a trending_rank column with values; this history has none")
    rank, codes, day = _grid(history, "trending_rank")
    in_top = rank <= top_k  # NaN (absent, unranked) compares False: not in the top K that day
    enters = np.zeros_like(in_top)
    for k in range(1, min(horizon, in_top.shape[1] - 1) + 1):
        enters[:, : in_top.shape[1] - k] |= in_top[:, k:]
    label: np.ndarray = enters[codes, day].astype("float64")
    label[in_top[codes, day]] = np.nan
    label[day + horizon > day.max()] = np.nan
    return label


def surge_labels(
    history: pd.DataFrame, *, horizon: int = 7, ratio: float = 2.0, min_delta: float = 1000.0
) -> np.ndarray:
    """1 when downloads(t+H) >= ratio * downloads(t) and downloads(t+H) - downloads(t) >= min_delta."""
    d, codes, day = _grid(history, "downloads")
    later = np.full_like(d, np.nan)
    if horizon < d.shape[1]:
        later[:, : d.shape[1] - horizon] = d[:, horizon:]
    now, then = d[codes, day], later[codes, day]
    label: np.ndarray = ((then >= ratio * now) & (then - now >= min_delta)).astype("float64")
    label[np.isnan(now) | np.isnan(then)] = np.nan
    return label


def make_labels(history: pd.DataFrame, config: LabelConfig) -> np.ndarray:
    """The configured label for every row of `history`, in its order."""
    if history.empty:
        return np.zeros(0)
    if config.label == "trending":
        return trending_labels(history, top_k=config.top_k, horizon=config.horizon)
    return surge_labels(history, horizon=config.horizon, ratio=config.surge_ratio, min_delta=config.surge_min_delta)
