"""The one feature implementation: training, backtest and the streaming features service all call this.

Everything is vectorised: per-model time series are laid out as a dense (models x calendar days) grid, so
lags are column shifts and a missing day is simply a NaN cell (the calendar reindex); cross-sectional
features are pandas groupby ranks over the day's rows.

Exactness contract (no train/serve skew): the features of day t depend only on rows dated
t - HISTORY_WINDOW_DAYS + 1 .. t, and cross-sectional features on the *whole* population of day t.
A streaming caller therefore computes day t as

    compute_features(pd.concat([window_rows, todays_rows]), output_from=t)

where `window_rows` are every model's rows of the previous HISTORY_WINDOW_DAYS - 1 days and
`todays_rows` is the complete day t (every model seen that day, not one batch of it). The result
equals, row for row, what `compute_features(full_history)` gives for day t (tests/model/test_features.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from typing import Literal

import numpy as np
import pandas as pd

HISTORY_WINDOW_DAYS: int = 14
KEY_COLUMNS: tuple[str, str] = ("snapshot_date", "model_id")

# Gaps of up to this many days are bridged with the last seen value for the 3- and 7-day differences.
_FFILL_LIMIT = 3
# Half-life (days) of the decayed likes score (likes_decay_3d).
_LIKES_HALF_LIFE = 3.0
# The trending list's top K the cross-sectional gaps are measured against (the label's default K).
TOP_K = 10

# Each feature's scale, declared with it. LEVEL: the absolute level of a counter (cumulative likes and downloads
# and their raw differences); its scale drifts over a history (an organisation or a niche grows), so splits learnt
# on it do not carry over to later days, and the models learn from the SCALE_FREE features only: ranks, rank
# movement, shares, ratios, the day's percentiles and the projected next week against the label's thresholds.
Scale = Literal["level", "scale-free"]
LEVEL: Scale = "level"
SCALE_FREE: Scale = "scale-free"

_TIME_SCALES: dict[str, Scale] = {
    "log_downloads": LEVEL,
    "lag_1_delta": LEVEL,
    "lag_1_growth": SCALE_FREE,
    "delta_downloads_24h": LEVEL,
    "rolling_mean_7": LEVEL,
    "downloads_vs_mean_7": SCALE_FREE,
    "growth_rate_7d": SCALE_FREE,
    "delta_7d": LEVEL,
    "log_likes": LEVEL,
    "likes_1d": LEVEL,
    "likes_7d": LEVEL,
    "likes_velocity_3d": LEVEL,
    "likes_acceleration": LEVEL,
    "likes_growth_7d": SCALE_FREE,
    "days_observed_14d": SCALE_FREE,
    "days_since_prev_obs": SCALE_FREE,
    "trending_rank": SCALE_FREE,
    "rank_change_1d": SCALE_FREE,
    "rank_change_7d": SCALE_FREE,
    "best_rank_7d": SCALE_FREE,
    "days_ranked_7d": SCALE_FREE,
    # trending-specific: rank history over the whole window and a proxy of the Hub's trendingScore
    "best_rank_14d": SCALE_FREE,
    "mean_rank_7d": SCALE_FREE,
    "rank_change_3d": SCALE_FREE,
    "days_top10_14d": SCALE_FREE,
    "days_top25_14d": SCALE_FREE,
    "likes_2d": LEVEL,
    "trend_score_proxy": LEVEL,
    "log_rank_gain_1d": SCALE_FREE,
    "log_rank_gain_3d": SCALE_FREE,
    "log_rank_gain_7d": SCALE_FREE,
    # the Hub's trendingScore weighs recent likes more: likes of each day of the window, halved every 3 days back,
    # and the likes gained over the window (13 daily increments)
    "likes_decay_3d": LEVEL,
    "likes_13d": LEVEL,
    # surge-specific: `downloads` is a 30-day rolling count; downloads_all_time gives the daily increments
    "log_downloads_all_time": LEVEL,
    "window_share": SCALE_FREE,
    "inc_7d": LEVEL,
    "inc_7d_run_rate": SCALE_FREE,
    "inc_3d_run_rate": SCALE_FREE,
    # surge-specific: next week's downloads projected at the current run rate, against the label's thresholds
    "leave_share_7d": SCALE_FREE,
    "proj_ratio_3d": SCALE_FREE,
    "proj_ratio_7d": SCALE_FREE,
    "surge_gap_3d": SCALE_FREE,
    "surge_gap_7d": SCALE_FREE,
    "surge_gap_1d": SCALE_FREE,
    "rate_accel_1d_7d": SCALE_FREE,
}
_TIME_FEATURES: tuple[str, ...] = tuple(_TIME_SCALES)
_ROW_FEATURES: tuple[str, ...] = ("age_days", "day_of_week")
_DAY_RANKED: tuple[str, ...] = (
    "log_downloads",
    "lag_1_delta",
    "growth_rate_7d",
    "likes_7d",
    "likes_velocity_3d",
    "trend_score_proxy",
    "inc_7d_run_rate",
)
_TASK_RANKED: tuple[str, ...] = ("log_downloads", "growth_rate_7d", "likes_7d")
_CROSS_SCALES: dict[str, Scale] = {
    **dict.fromkeys((f"day_pct_{c}" for c in _DAY_RANKED), SCALE_FREE),
    **dict.fromkeys((f"task_pct_{c}" for c in _TASK_RANKED), SCALE_FREE),
    "task_log_models": SCALE_FREE,
    "author_log_models": SCALE_FREE,
    "author_log_downloads": LEVEL,
    "author_likes_7d": LEVEL,
    "author_best_rank": SCALE_FREE,
    "author_max_growth_7d": SCALE_FREE,
    "day_order_trend_score": SCALE_FREE,
    "author_max_surge_gap": SCALE_FREE,
    # against the day's trending list: how far the decayed likes score is from the top K's (K = TOP_K)
    "likes_decay_order": SCALE_FREE,
    "likes_decay_gap_top10": SCALE_FREE,
    "likes_decay_gap_rank10": SCALE_FREE,
    "likes_catchup_top10": SCALE_FREE,
}
_CROSS_FEATURES: tuple[str, ...] = tuple(_CROSS_SCALES)
FEATURE_COLUMNS: tuple[str, ...] = (*_TIME_FEATURES, *_ROW_FEATURES, *_CROSS_FEATURES)
# The row features (age, weekday) have no counter scale.
LEVEL_FEATURES: frozenset[str] = frozenset(c for c, scale in (_TIME_SCALES | _CROSS_SCALES).items() if scale == LEVEL)


# Time features are computed on NaN-padded grids whose columns are the days lo - _PAD .. hi, where lo..hi
# are the days asked for: a look-back of k days is then a column slice (a view, no copy) and the
# arithmetic runs on the asked-for columns only. The longest look-back is HISTORY_WINDOW_DAYS - 1 days.
_PAD = HISTORY_WINDOW_DAYS


def _ffill(g: np.ndarray, limit: int) -> np.ndarray:
    """Each cell, or the nearest of the `limit` earlier cells with a value (NaN before the grid)."""
    out = g.copy()
    for k in range(1, limit + 1):
        hole = np.isnan(out[:, k:])
        out[:, k:][hole] = g[:, :-k][hole]
    return out


def _counter_diff(cur: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """Difference of a cumulative counter; NaN across a reset (repo deleted and re-created)."""
    diff = cur - prev
    reset = (diff < -0.5 * prev) & (prev >= 10)
    return np.where(reset, np.nan, diff)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out: np.ndarray = num / np.maximum(den, 1.0)
    return out


# The surge label's default thresholds (labels.LabelConfig): downloads(t+7) >= 2 x downloads(t) and +1000.
SURGE_RATIO: float = 2.0
SURGE_MIN_DELTA: float = 1000.0


def _surge_projection(
    d: np.ndarray,
    all_time: np.ndarray,
    at_d: Callable[[int, bool], np.ndarray],
    at_a: Callable[[int, bool], np.ndarray],
) -> dict[str, np.ndarray]:
    """downloads(t+7) projected at the current run rate, and how far that is from the surge thresholds.

    `downloads` is a 30-day rolling count: downloads(t+7) - downloads(t) = the daily downloads of t+1..t+7
    (projected: the daily rate of the last 1, 3 or 7 days) - those of t-29..t-23 (leaving the window). With
    downloads_all_time A, A(s) - downloads(s) = A(s-30), so A(t-j) - A(t-30) is exactly what was downloaded
    over t-29..t-j: the leaving week is taken as its uniform share, from the earliest A(t-j) of the window
    (least touched by a recent jump). Without A, the rate is D's change plus the uniform share of what left,
    and the leaving week the uniform share of the rest of the window. `at_d(k, bridged)`, `at_a(k, bridged)`: the
    value k days earlier, with gaps of a few days bridged when `bridged` (the 3- and 7-day rates).
    """
    a30 = all_time - d  # A(t-30)
    leave_a = np.full_like(d, np.nan)
    for j in range(1, HISTORY_WINDOW_DAYS):  # ascending: the earliest observed A(t-j) wins
        span = np.clip(at_a(j, False) - a30, 0.0, None) * (7.0 / (30 - j))
        leave_a = np.where(np.isnan(span), leave_a, span)
    leave_a = np.where(np.isnan(leave_a) & ~np.isnan(a30), d * (7.0 / 30.0), leave_a)  # nothing earlier seen
    out: dict[str, np.ndarray] = {}
    rates = {}
    for days in (1, 3, 7):
        a_then = at_a(days, days > 1)
        d_then = at_d(days, days > 1)
        rate_a = np.clip(all_time - a_then, 0.0, None) / days
        rate_d = np.clip(d - d_then + d_then * (days / 30.0), 0.0, None) / days
        rates[days] = np.where(np.isnan(rate_a), rate_d, rate_a)
    leave_d = np.clip(d - 7.0 * rates[7], 0.0, None) * (7.0 / 23.0)
    leave = np.where(np.isnan(leave_a), leave_d, leave_a)
    out["leave_share_7d"] = leave / np.maximum(d, 1.0)
    # yesterday's pace against the week's: a jump that the 3- and 7-day rates still dilute
    out["rate_accel_1d_7d"] = np.log((rates[1] + 1.0) / (rates[7] + 1.0))
    for days, rate in rates.items():
        delta = 7.0 * rate - leave
        projected = d + delta
        if days > 1:
            out[f"proj_ratio_{days}d"] = projected / np.maximum(d, 1.0)
        # log distance to the nearer-to-fail of the two thresholds: > 0 = a surge at the current rate
        out[f"surge_gap_{days}d"] = np.minimum(
            np.log(np.maximum(projected, 1.0) / np.maximum(SURGE_RATIO * d, 1.0)),
            np.log(np.maximum(delta, 1.0) / SURGE_MIN_DELTA),
        )
    return out


def _time_arrays(grid: Callable[[str], np.ndarray], n_out: int) -> dict[str, np.ndarray]:
    """Per-model time-series features on the last `n_out` columns of the padded grids `grid(column)`.

    `grid(column)` is (models x (_PAD + n_out)) float64, NaN where absent. Returns float64 arrays
    (models x n_out). Every value is the same element-wise arithmetic whatever the grid's extent, so
    blocks of models, blocks of days, batch and streaming give bit-identical features.
    """

    def at(g: np.ndarray, k: int = 0) -> np.ndarray:
        """The value of k days earlier, on the output columns (a view)."""
        return g[:, _PAD - k : _PAD - k + n_out]

    def window_sum_count(g: np.ndarray, days: int) -> tuple[np.ndarray, np.ndarray]:
        # Explicit shifts, not cumsum: the summation order is the same in any window (streaming = batch).
        total = np.zeros((g.shape[0], n_out))
        count = np.zeros((g.shape[0], n_out))
        for k in range(days):
            s = at(g, k)
            seen = ~np.isnan(s)
            total += np.where(seen, s, 0.0)
            count += seen
        return total, count

    d_grid = grid("downloads")
    seen = np.where(np.isnan(grid("_seen")), np.nan, 1.0)
    d = at(d_grid)
    d_prev = at(d_grid, 1)
    d_ff = _ffill(d_grid, _FFILL_LIMIT)
    d_ff7 = at(d_ff, 7)
    d_sum, d_count = window_sum_count(d_grid, 7)
    rolling_mean_7 = d_sum / np.where(d_count > 0, d_count, np.nan)
    all_time_grid = grid("downloads_all_time")
    all_time = at(all_time_grid)
    delta_24h = all_time - at(all_time_grid, 1)
    likes_grid = grid("likes")
    likes = at(likes_grid)
    likes_ff = _ffill(likes_grid, _FFILL_LIMIT)
    likes_3, likes_6, likes_7 = at(likes_ff, 3), at(likes_ff, 6), at(likes_ff, 7)
    likes_7d = _counter_diff(likes, likes_7)
    rank_grid = grid("trending_rank")
    rank = at(rank_grid)
    _, seen_14 = window_sum_count(seen, HISTORY_WINDOW_DAYS)
    since_prev = np.full_like(d, np.nan)
    for k in range(HISTORY_WINDOW_DAYS - 1, 0, -1):  # descending, so the nearest earlier day wins
        since_prev[~np.isnan(at(seen, k))] = k
    best_rank, ranked_7 = rank.copy(), (~np.isnan(rank)).astype("float64")
    for k in range(1, 7):
        earlier = at(rank_grid, k)
        best_rank = np.fmin(best_rank, earlier)
        ranked_7 += ~np.isnan(earlier)
    # rank history over the whole window (NaN = unranked or absent that day)
    best_rank_14 = rank.copy()
    top10 = (rank <= 10).astype("float64")
    top25 = (rank <= 25).astype("float64")
    for k in range(1, HISTORY_WINDOW_DAYS):
        earlier = at(rank_grid, k)
        best_rank_14 = np.fmin(best_rank_14, earlier)
        top10 += earlier <= 10
        top25 += earlier <= 25
    rank_sum, rank_count = window_sum_count(rank_grid, 7)
    # likes gained on each day of the window (between consecutive observed days, inside the window only, so
    # streaming is exact), weighted 0.5 ** (days back / 3); a counter reset or a fall counts as nothing
    last = at(likes_grid, HISTORY_WINDOW_DAYS - 1)
    decayed, gained = np.zeros_like(likes), np.zeros_like(likes)
    for k in range(HISTORY_WINDOW_DAYS - 2, -1, -1):
        cur = at(likes_grid, k)
        inc = np.clip(_counter_diff(cur, last), 0.0, None)
        inc = np.where(np.isnan(inc), 0.0, inc)
        decayed += inc * 0.5 ** (k / _LIKES_HALF_LIFE)
        gained += inc
        last = np.where(np.isnan(cur), last, cur)
    decayed[np.isnan(likes)] = np.nan
    gained[np.isnan(likes)] = np.nan
    # trendingScore proxy: likes of the last 7 days with the last 2 days counted twice (recent likes weigh more)
    likes_2d = _counter_diff(likes, at(likes_ff, 2))
    trend_score = np.where(np.isnan(likes_7d), 0.0, likes_7d) + np.where(np.isnan(likes_2d), 0.0, likes_2d)
    trend_score = np.where(np.isnan(likes_7d) & np.isnan(likes_2d), np.nan, trend_score)
    # downloads(t+7) = downloads(t) + next week's increments - the increments that leave the 30-day window;
    # a run rate (recent increments scaled to 30 days) above the rolling count means the count is rising,
    # and a window share near 1 (downloads ~ all-time) means the repo is younger than the 30-day window.
    all_time_ff = _ffill(all_time_grid, _FFILL_LIMIT)
    inc_7d = all_time - at(all_time_ff, 7)
    inc_7d = np.where(inc_7d < 0, np.nan, inc_7d)
    inc_3d = all_time - at(all_time_ff, 3)
    inc_3d = np.where(inc_3d < 0, np.nan, inc_3d)
    projection = _surge_projection(
        d,
        all_time,
        lambda k, bridged: at(d_ff if bridged else d_grid, k),
        lambda k, bridged: at(all_time_ff if bridged else all_time_grid, k),
    )
    return {
        "log_downloads": np.log1p(d),
        "lag_1_delta": d - d_prev,
        "lag_1_growth": _ratio(d - d_prev, d_prev),
        "delta_downloads_24h": np.where(delta_24h < 0, np.nan, delta_24h),
        "rolling_mean_7": rolling_mean_7,
        "downloads_vs_mean_7": _ratio(d, rolling_mean_7),
        "growth_rate_7d": _ratio(d - d_ff7, d_ff7),
        "delta_7d": d - d_ff7,
        "log_likes": np.log1p(likes),
        "likes_1d": _counter_diff(likes, at(likes_grid, 1)),
        "likes_7d": likes_7d,
        "likes_velocity_3d": _counter_diff(likes, likes_3) / 3.0,
        "likes_acceleration": (_counter_diff(likes, likes_3) - _counter_diff(likes_3, likes_6)) / 3.0,
        "likes_growth_7d": _ratio(likes_7d, likes_7),
        "days_observed_14d": seen_14,
        "days_since_prev_obs": since_prev,
        "trending_rank": rank,
        "rank_change_1d": at(rank_grid, 1) - rank,
        "rank_change_7d": at(rank_grid, 7) - rank,
        "best_rank_7d": best_rank,
        "days_ranked_7d": ranked_7,
        "best_rank_14d": best_rank_14,
        "mean_rank_7d": rank_sum / np.where(rank_count > 0, rank_count, np.nan),
        "rank_change_3d": at(rank_grid, 3) - rank,
        # movement in log rank: 40 -> 20 is as far as 20 -> 10 (the list is heavy-tailed)
        "log_rank_gain_1d": np.log(at(rank_grid, 1) / rank),
        "log_rank_gain_3d": np.log(at(rank_grid, 3) / rank),
        "log_rank_gain_7d": np.log(at(rank_grid, 7) / rank),
        "days_top10_14d": top10,
        "days_top25_14d": top25,
        "likes_2d": likes_2d,
        "likes_decay_3d": decayed,
        "likes_13d": gained,
        "trend_score_proxy": trend_score,
        "log_downloads_all_time": np.log1p(all_time),
        "window_share": d / np.maximum(all_time, 1.0),
        "inc_7d": inc_7d,
        "inc_7d_run_rate": _ratio(inc_7d * (30.0 / 7.0), d),
        "inc_3d_run_rate": _ratio(inc_3d * (30.0 / 3.0), d),
        **projection,
    }


# The time features the cross-sectional features read: all a caller re-ranking a complete day has to load
# (a 2M-model day of every time feature would not fit a service's memory budget).
CROSS_INPUT_COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys(
        (
            *_DAY_RANKED,
            *_TASK_RANKED,
            "likes_7d",
            "trending_rank",
            "growth_rate_7d",
            "surge_gap_3d",
            "likes_decay_3d",
            "likes_13d",
        )
    )
)


def _exact_values(column: pd.Series) -> np.ndarray:
    """The column as float: float32 kept as it is (the grids are float64, and float32 -> float64 is exact), so a
    Hub-scale caller holding counts as float32 does not pay for a float64 copy of every row; else float64."""
    if column.dtype == np.float32:
        return column.to_numpy()
    return column.to_numpy(dtype="float64", na_value=np.nan)


def _time_features(
    history: pd.DataFrame,
    codes: np.ndarray,
    day: np.ndarray,
    n_models: int,
    rows: np.ndarray,
    *,
    columns: tuple[str, ...] = _TIME_FEATURES,
    block_models: int | None = None,
) -> dict[str, np.ndarray]:
    """Time features `columns` (float32) at the positions `rows` of `history`."""
    return _time_features_multi(history, codes, day, n_models, [(rows, columns)], block_models=block_models)[0]


def _time_features_multi(
    history: pd.DataFrame,
    codes: np.ndarray,
    day: np.ndarray,
    n_models: int,
    requests: list[tuple[np.ndarray, tuple[str, ...]]],
    *,
    block_models: int | None = None,
) -> list[dict[str, np.ndarray]]:
    """For each (rows, columns) request, the time features `columns` (float32) at the positions `rows`.

    One pass: the grids span only the days of the requested rows plus the look-back, and hold
    `block_models` models at a time (all at once when None), so memory is bounded by the block.
    """
    outs = [{c: np.full(len(rows), np.nan, dtype="float32") for c in columns} for rows, columns in requests]
    asked = [rows for rows, _ in requests if len(rows)]
    if not asked:
        return outs
    lo = min(int(day[rows].min()) for rows in asked)
    hi = max(int(day[rows].max()) for rows in asked)
    n_out = hi - lo + 1
    near = np.flatnonzero((day >= lo - _PAD) & (day <= hi))  # rows inside the look-back of the output days
    n_codes, n_col = codes[near], day[near] - (lo - _PAD)
    values = {
        c: _exact_values(history[c])[near] if c in history.columns else None
        for c in ("downloads", "downloads_all_time", "likes", "trending_rank")
    }
    block = block_models or max(n_models, 1)
    edges = np.arange(0, n_models + block, block) // block

    def by_block(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(c // block, kind="stable")  # stable: the input order within a block
        return order, np.searchsorted(c[order] // block, edges)

    n_order, n_bounds = by_block(n_codes)
    r_blocks = [by_block(codes[rows]) for rows, _ in requests]
    for i, first in enumerate(range(0, n_models, block)):
        size = min(block, n_models - first)
        wanted = [order[bounds[i] : bounds[i + 1]] for order, bounds in r_blocks]
        if not any(len(w) for w in wanted):
            continue
        n_idx = n_order[n_bounds[i] : n_bounds[i + 1]]
        g_codes, g_cols = n_codes[n_idx] - first, n_col[n_idx]

        def grid(
            column: str,
            g_codes: np.ndarray = g_codes,
            g_cols: np.ndarray = g_cols,
            n_idx: np.ndarray = n_idx,
            size: int = size,
        ) -> np.ndarray:
            g = np.full((size, _PAD + n_out), np.nan)
            if column == "_seen":
                g[g_codes, g_cols] = 1.0
            elif values.get(column) is not None:
                g[g_codes, g_cols] = values[column][n_idx]  # type: ignore[index]
            return g

        arrays = _time_arrays(grid, n_out)
        for (rows, columns), out, r_idx in zip(requests, outs, wanted, strict=True):
            at_codes, at_cols = codes[rows[r_idx]] - first, day[rows[r_idx]] - lo
            for c in columns:
                out[c][r_idx] = arrays[c][at_codes, at_cols]
        del arrays
    return outs


def _group_key(*codes: np.ndarray) -> np.ndarray:
    key = np.zeros(len(codes[0]), dtype="int64")
    for c in codes:
        key = key * (int(c.max()) + 1 if len(c) else 1) + c
    return key


def _top_k_reference(score: np.ndarray, rank: np.ndarray) -> tuple[float, float]:
    """For one day's population: the K-th highest decayed likes score, and the score of the model at rank K."""
    v = np.sort(score[~np.isnan(score)])
    kth = float(v[-TOP_K]) if len(v) >= TOP_K else np.nan
    at_rank = score[(rank == TOP_K) & ~np.isnan(score)]
    return kth, float(at_rank.max()) if len(at_rank) else np.nan


def _top_k_gaps(score: np.ndarray, gained: np.ndarray, kth: np.ndarray, at_k: np.ndarray) -> dict[str, np.ndarray]:
    """The decayed likes score against the day's top K (one implementation for every path, so values are equal).

    `likes_decay_gap_top10`: log1p(score) - log1p(the day's K-th highest score); `likes_decay_gap_rank10`: the
    same against the model at trending rank K that day; `likes_catchup_top10`: a week of likes at the window's
    rate against the score still missing to the K-th (> 1: the current pace would close the gap).
    """
    return {
        "likes_decay_gap_top10": np.log1p(score) - np.log1p(kth),
        "likes_decay_gap_rank10": np.log1p(score) - np.log1p(at_k),
        "likes_catchup_top10": (gained * (7.0 / 13.0)) / (np.clip(kth - score, 0.0, None) + 0.5),
    }


def author_codes(models: Collection[str]) -> np.ndarray:
    """Each model's author (the id before its "/", the whole id where there is none) as an integer code, in order
    of first appearance (as `pd.factorize` numbers them). One author string a model and no intermediate lists, where
    pandas' `str.split` held two strings and a list for each (its time and peak memory at 2M models:
    docs/decisions/pipeline-redesign.md, session 24). A pandas array or index is read as one list first: iterating
    it asks for each element through Python."""
    names = models.tolist() if isinstance(models, pd.Index | pd.Series | np.ndarray) else models
    index: dict[str, int] = {}
    return np.fromiter(
        (index.setdefault(model.partition("/")[0], len(index)) for model in names), dtype=np.intp, count=len(names)
    )


def group_ranks(values: np.ndarray, groups: np.ndarray | None = None, *, descending_min: bool = False) -> np.ndarray:
    """What pandas' `Series.groupby(groups).rank(pct=True)` gives (the "average" method), or with `descending_min`
    `.rank(ascending=False, method="min")`, as float64, NaN where the value is NaN; `groups`: integer codes, None
    for one group. The same values, from one sort of the values (by group): pandas' grouped rank was most of the
    features close's ranks (docs/decisions/pipeline-redesign.md, session 29).

    A run of equal values within a group takes positions first..last (from 1): "average" gives each
    (first + last) / 2, which is exactly pandas' sum of the positions over their count (integers and halves are
    exact), divided by the group's count of values as pandas divides it; "min" descending gives one more than the
    group's values above the run."""
    out = np.full(len(values), np.nan)
    at = np.flatnonzero(~np.isnan(values))
    if not len(at):
        return out
    v = values[at]
    order = np.argsort(v)  # a run's positions do not depend on the order of its equal values
    n = len(order)
    new_group = np.zeros(n, dtype=bool)
    new_group[0] = True
    if groups is not None:
        g = groups[at][order]
        small = g.min() >= np.iinfo(np.int16).min and g.max() <= np.iinfo(np.int16).max
        by_group = np.argsort(g.astype(np.int16) if small else g, kind="stable")  # a radix sort for 16-bit codes
        order, g = order[by_group], g[by_group]
        new_group[1:] = g[1:] != g[:-1]
    v = v[order]
    new_run = new_group.copy()
    new_run[1:] |= v[1:] != v[:-1]
    group_of = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    sizes = np.diff(np.append(starts, n))
    runs = np.flatnonzero(new_run)
    run_group = group_of[runs]
    first = runs - starts[run_group] + 1
    last = np.append(runs[1:], n) - starts[run_group]
    run_of = np.cumsum(new_run) - 1
    if descending_min:
        ranked = (sizes[run_group] - last + 1).astype("float64")[run_of]
    else:
        ranked = ((first + last) / 2.0)[run_of] / sizes[group_of]
    out[at[order]] = ranked
    return out


def _cross_features(out: pd.DataFrame, day: np.ndarray, authors: np.ndarray) -> None:
    """Ranks and aggregates over the whole day's population (and within task and author).

    Each result is stored as the float32 it ends as, as soon as it is computed: a whole day's float64 results
    together, then their float32 copy, were the close's peak of memory (docs/decisions/pipeline-redesign.md,
    session 24). No result is read back here, so the values are those of a cast at the end."""

    def put(name: str, values: pd.Series | np.ndarray) -> None:
        out[name] = np.asarray(values, dtype=np.float32)  # rank and transform keep the rows' order

    def ranked(column: str, groups: np.ndarray, descending_min: bool = False) -> np.ndarray:
        return group_ranks(out[column].to_numpy(na_value=np.nan), groups, descending_min=descending_min)

    by_day = out.groupby(day, sort=False)
    for c in _DAY_RANKED:
        put(f"day_pct_{c}", ranked(c, day))
    task_codes, _ = pd.factorize(out["_task"], use_na_sentinel=False)
    task_key = _group_key(day, task_codes)
    by_task = out.groupby(task_key, sort=False)
    for c in _TASK_RANKED:
        put(f"task_pct_{c}", ranked(c, task_key))
    put("task_log_models", np.log1p(by_task["log_downloads"].transform("size").to_numpy(dtype="float64")))
    by_author = out.groupby(_group_key(day, authors), sort=False)
    put("author_log_models", np.log1p(by_author["log_downloads"].transform("size").to_numpy(dtype="float64")))
    put("author_log_downloads", np.log1p(by_author["_downloads"].transform("sum")))
    put("author_likes_7d", by_author["likes_7d"].transform("sum"))
    put("author_best_rank", by_author["trending_rank"].transform("min"))
    put("author_max_growth_7d", by_author["growth_rate_7d"].transform("max"))
    # an organisation's releases surge together: a sibling already at surge pace is a leading sign
    put("author_max_surge_gap", by_author["surge_gap_3d"].transform("max"))
    # where the trendingScore proxy would place the model in the day's list (1 = highest)
    put("day_order_trend_score", ranked("trend_score_proxy", day, descending_min=True))
    put("likes_decay_order", ranked("likes_decay_3d", day, descending_min=True))
    score = out["likes_decay_3d"].to_numpy(dtype="float64", na_value=np.nan)
    rank = out["trending_rank"].to_numpy(dtype="float64", na_value=np.nan)
    kth, at_k = np.full(len(out), np.nan), np.full(len(out), np.nan)
    for members in by_day.indices.values():
        kth[members], at_k[members] = _top_k_reference(score[members], rank[members])
    gained = out["likes_13d"].to_numpy(dtype="float64", na_value=np.nan)
    for name, values in _top_k_gaps(score, gained, kth, at_k).items():
        put(name, values)


def compute_features(
    history: pd.DataFrame, *, output_from: dt.date | pd.Timestamp | None = None, cross_sectional: bool = True
) -> pd.DataFrame:
    """Features for every row of `history` dated on or after `output_from` (all rows when None).

    `history` is a typed history frame (hubpulse_common.history); missing optional columns are allowed.
    Returns the key columns plus FEATURE_COLUMNS (float32), rows in the input's order, index reset.
    `cross_sectional=False` leaves CROSS_FEATURE_COLUMNS NaN, uncomputed: for a caller whose rows are not the whole
    population of their days (a streaming batch; the day's ranks come at its close).
    """
    if history.empty:
        return pd.DataFrame(
            {"snapshot_date": pd.Series(dtype="datetime64[ns]"), "model_id": pd.Series(dtype=object)}
            | {c: pd.Series(dtype="float32") for c in FEATURE_COLUMNS}
        )
    dates = history["snapshot_date"].to_numpy(dtype="datetime64[D]")
    first = dates.min()
    day = (dates - first).astype("int64")
    codes, models = pd.factorize(history["model_id"])
    keep = np.ones(len(history), dtype=bool)
    if output_from is not None:
        keep = dates >= np.datetime64(pd.Timestamp(output_from).date(), "D")
    picked = _time_features(history, codes, day, len(models), np.flatnonzero(keep))
    rows = history.loc[keep]
    r_codes, r_day = codes[keep], day[keep]
    out = pd.DataFrame({"snapshot_date": rows["snapshot_date"].to_numpy(), "model_id": rows["model_id"].to_numpy()})
    for name, values in picked.items():
        out[name] = values
    created = rows["created_at"] if "created_at" in rows.columns else pd.Series(pd.NaT, index=rows.index)
    age = (rows["snapshot_date"] - created).dt.total_seconds().to_numpy(dtype="float64", na_value=np.nan) / 86400
    out["age_days"] = np.clip(age, 0.0, None)
    out["day_of_week"] = rows["snapshot_date"].dt.day_of_week.to_numpy(dtype="float64")
    if cross_sectional:
        # authors are split once per model, not once per row
        authors = author_codes(models)
        out["_task"] = rows["pipeline_tag"].to_numpy() if "pipeline_tag" in rows.columns else np.nan
        out["_downloads"] = rows["downloads"].fillna(0).to_numpy(dtype="float64")
        _cross_features(out, r_day, authors[r_codes])
        out = out.drop(columns=["_task", "_downloads"])
    else:
        out[list(_CROSS_FEATURES)] = np.nan
    out[list(FEATURE_COLUMNS)] = out[list(FEATURE_COLUMNS)].astype("float32")
    return out[["snapshot_date", "model_id", *FEATURE_COLUMNS]]


def _pct_rank(sorted_valid: np.ndarray, x: np.ndarray) -> np.ndarray:
    """pandas rank(pct=True, method="average") of x within the population whose non-NaN values are sorted."""
    left = np.searchsorted(sorted_valid, x, side="left")
    right = np.searchsorted(sorted_valid, x, side="right")
    rank = left + (right - left + 1) / 2.0
    out: np.ndarray = rank / len(sorted_valid) if len(sorted_valid) else np.full(len(x), np.nan)
    return np.where(np.isnan(x), np.nan, out)


def _cross_features_at(pop: dict[str, np.ndarray], at: np.ndarray) -> dict[str, np.ndarray]:
    """The cross-sectional features of the population rows `at`, each ranked against its whole day.

    `pop` holds, for every row of the days concerned: "day", "task" and "author" (int codes) and
    "_downloads" and the CROSS_INPUT_COLUMNS (float32, as compute_features holds them). Gives the same values
    as `_cross_features` over the whole population, read at `at`, without ranking every row.
    """
    out = {c: np.full(len(at), np.nan) for c in _CROSS_FEATURES}
    day = pop["day"]
    order = np.argsort(day, kind="stable")
    bounds = np.searchsorted(day[order], np.unique(day[at]))
    ends = np.searchsorted(day[order], np.unique(day[at]), side="right")
    at_day = day[at]
    for start, end in zip(bounds, ends, strict=True):
        members = order[start:end]  # the day's population
        mine = np.flatnonzero(at_day == day[members[0]])  # positions in `at` on this day
        rows = at[mine]
        for c in _DAY_RANKED:
            v = pop[c][members]
            out[f"day_pct_{c}"][mine] = _pct_rank(np.sort(v[~np.isnan(v)]), pop[c][rows])
        v = pop["trend_score_proxy"][members]
        s = np.sort(v[~np.isnan(v)])
        x = pop["trend_score_proxy"][rows]
        out["day_order_trend_score"][mine] = np.where(
            np.isnan(x), np.nan, len(s) - np.searchsorted(s, x, side="right") + 1.0
        )
        v = pop["likes_decay_3d"][members]
        s = np.sort(v[~np.isnan(v)])
        x = pop["likes_decay_3d"][rows]
        out["likes_decay_order"][mine] = np.where(
            np.isnan(x), np.nan, len(s) - np.searchsorted(s, x, side="right") + 1.0
        )
        kth, at_k = _top_k_reference(v.astype("float64"), pop["trending_rank"][members].astype("float64"))
        gaps = _top_k_gaps(
            x.astype("float64"),
            pop["likes_13d"][rows].astype("float64"),
            np.full(len(rows), kth),
            np.full(len(rows), at_k),
        )
        for name, values in gaps.items():
            out[name][mine] = values
        task = pop["task"][members]
        t_order = np.argsort(task, kind="stable")
        t_sorted = task[t_order]
        row_task = pop["task"][rows]
        for t in np.unique(row_task):
            group = members[t_order[np.searchsorted(t_sorted, t) : np.searchsorted(t_sorted, t, side="right")]]
            sel = np.flatnonzero(row_task == t)
            out["task_log_models"][mine[sel]] = np.log1p(float(len(group)))
            for c in _TASK_RANKED:
                v = pop[c][group]
                out[f"task_pct_{c}"][mine[sel]] = _pct_rank(np.sort(v[~np.isnan(v)]), pop[c][rows[sel]])
        frame = pd.DataFrame(
            {
                "author": pop["author"][members],
                "_downloads": pop["_downloads"][members],
                "likes_7d": pop["likes_7d"][members],
                "trending_rank": pop["trending_rank"][members],
                "growth_rate_7d": pop["growth_rate_7d"][members],
                "surge_gap_3d": pop["surge_gap_3d"][members],
            }
        )
        by_author = frame.groupby("author", sort=True)
        agg = pd.DataFrame(
            {
                "size": by_author.size(),
                "downloads": by_author["_downloads"].sum(),
                "likes_7d": by_author["likes_7d"].sum(),
                "best_rank": by_author["trending_rank"].min(),
                "max_growth": by_author["growth_rate_7d"].max(),
                "max_surge_gap": by_author["surge_gap_3d"].max(),
            }
        )
        pos = agg.index.get_indexer(pop["author"][rows])
        out["author_log_models"][mine] = np.log1p(agg["size"].to_numpy(dtype="float64")[pos])
        out["author_log_downloads"][mine] = np.log1p(agg["downloads"].to_numpy(dtype="float64")[pos])
        out["author_likes_7d"][mine] = agg["likes_7d"].to_numpy()[pos]
        out["author_best_rank"][mine] = agg["best_rank"].to_numpy()[pos]
        out["author_max_growth_7d"][mine] = agg["max_growth"].to_numpy()[pos]
        out["author_max_surge_gap"][mine] = agg["max_surge_gap"].to_numpy()[pos]
    return out


def compute_features_at(history: pd.DataFrame, rows: np.ndarray, *, block_models: int = 100_000) -> pd.DataFrame:
    """compute_features(history) read at the positions `rows` (in that order), without computing the rest.

    For training on a subsample: the time features are computed `block_models` models at a time and only
    for `rows`; the cross-sectional features need only a few time features of the whole population of
    the days of `rows`, against which each row is ranked. The values equal those of compute_features
    (tests/model/test_features.py), so the streaming features service and training cannot drift apart.
    """
    rows = np.asarray(rows, dtype="int64")
    if history.empty or len(rows) == 0:
        return compute_features(history.iloc[:0])
    dates = history["snapshot_date"].to_numpy(dtype="datetime64[D]")
    # int32 day and model codes: these per-row arrays (and their gathers) are most of the transient memory at Hub scale
    day = (dates - dates.min()).astype("int32")
    del dates
    factorized, models = pd.factorize(history["model_id"])
    codes = factorized.astype("int32") if len(models) < 2**31 else factorized
    del factorized
    population = np.flatnonzero((day >= day[rows].min()) & (day <= day[rows].max()))
    # time features: the cross-sectional inputs for the whole population, the others for `rows` only
    others = tuple(c for c in _TIME_FEATURES if c not in CROSS_INPUT_COLUMNS)
    cross_in, picked = _time_features_multi(
        history, codes, day, len(models), [(population, CROSS_INPUT_COLUMNS), (rows, others)], block_models=block_models
    )
    authors = author_codes(models)
    task = (
        pd.factorize(history["pipeline_tag"].to_numpy()[population], use_na_sentinel=False)[0]
        if "pipeline_tag" in history.columns
        else np.zeros(len(population), dtype="int64")
    )
    pop: dict[str, np.ndarray] = {
        "day": day[population],
        "task": task,
        "author": authors[codes[population]],
        "_downloads": history["downloads"].fillna(0).to_numpy(dtype="float64")[population],
        **cross_in,
    }
    at = np.searchsorted(population, rows)  # population is sorted and holds every row of `rows`
    selected = history.iloc[rows]
    out = pd.DataFrame(
        {"snapshot_date": selected["snapshot_date"].to_numpy(), "model_id": selected["model_id"].to_numpy()}
    )
    for c in _TIME_FEATURES:
        out[c] = cross_in[c][at] if c in cross_in else picked[c]
    created = selected["created_at"] if "created_at" in selected.columns else pd.Series(pd.NaT, index=selected.index)
    age = (selected["snapshot_date"] - created).dt.total_seconds().to_numpy(dtype="float64", na_value=np.nan) / 86400
    out["age_days"] = np.clip(age, 0.0, None)
    out["day_of_week"] = selected["snapshot_date"].dt.day_of_week.to_numpy(dtype="float64")
    for c, values in _cross_features_at(pop, at).items():
        out[c] = values
    out[list(FEATURE_COLUMNS)] = out[list(FEATURE_COLUMNS)].astype("float32")
    return out[["snapshot_date", "model_id", *FEATURE_COLUMNS]]


CROSS_FEATURE_COLUMNS: tuple[str, ...] = _CROSS_FEATURES


def cross_sectional_features(day_rows: pd.DataFrame) -> pd.DataFrame:
    """Recompute only the cross-sectional features of complete days from their stored time features.

    `day_rows`: snapshot_date, model_id, pipeline_tag, downloads and the time features CROSS_INPUT_COLUMNS
    (as compute_features returned them). A streaming caller that computed a day batch by batch (each batch
    ranked only against itself) calls this once the day is complete; it runs the same `_cross_features`
    as compute_features, so the result equals compute_features over the whole day. Returns the key
    columns plus CROSS_FEATURE_COLUMNS (float32), rows in the input's order.
    """
    dates = day_rows["snapshot_date"].to_numpy(dtype="datetime64[D]")
    day = (dates - dates.min()).astype("int64") if len(dates) else dates.astype("int64")
    out = pd.DataFrame({"snapshot_date": day_rows["snapshot_date"].to_numpy(), "model_id": day_rows["model_id"]})
    for name in CROSS_INPUT_COLUMNS:
        out[name] = day_rows[name].to_numpy(dtype="float32", na_value=np.nan)
    out["_task"] = day_rows["pipeline_tag"].to_numpy()
    out["_downloads"] = day_rows["downloads"].fillna(0).to_numpy(dtype="float64")
    # a model's author for each row: a day holds each model once, so factorising the ids first saves nothing
    _cross_features(out, day, author_codes(day_rows["model_id"]))  # float32 already
    return out[["snapshot_date", "model_id", *_CROSS_FEATURES]].reset_index(drop=True)
