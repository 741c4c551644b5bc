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

import numpy as np
import pandas as pd

HISTORY_WINDOW_DAYS: int = 14
KEY_COLUMNS: tuple[str, str] = ("snapshot_date", "model_id")

# Gaps of up to this many days are bridged with the last seen value for the 3- and 7-day differences.
_FFILL_LIMIT = 3

_TIME_FEATURES: tuple[str, ...] = (
    "log_downloads",
    "lag_1_delta",
    "lag_1_growth",
    "delta_downloads_24h",
    "rolling_mean_7",
    "downloads_vs_mean_7",
    "growth_rate_7d",
    "delta_7d",
    "log_likes",
    "likes_1d",
    "likes_7d",
    "likes_velocity_3d",
    "likes_acceleration",
    "likes_growth_7d",
    "days_observed_14d",
    "days_since_prev_obs",
    "trending_rank",
    "rank_change_1d",
    "rank_change_7d",
    "best_rank_7d",
    "days_ranked_7d",
    # trending-specific: rank history over the whole window and a proxy of the Hub's trendingScore
    "best_rank_14d",
    "mean_rank_7d",
    "rank_change_3d",
    "days_top10_14d",
    "days_top25_14d",
    "likes_2d",
    "trend_score_proxy",
    # surge-specific: `downloads` is a 30-day rolling count; downloads_all_time gives the daily increments
    "log_downloads_all_time",
    "window_share",
    "inc_7d",
    "inc_7d_run_rate",
    "inc_3d_run_rate",
)
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
_CROSS_FEATURES: tuple[str, ...] = (
    *(f"day_pct_{c}" for c in _DAY_RANKED),
    *(f"task_pct_{c}" for c in _TASK_RANKED),
    "task_log_models",
    "author_log_models",
    "author_log_downloads",
    "author_likes_7d",
    "author_best_rank",
    "author_max_growth_7d",
    "day_order_trend_score",
)
FEATURE_COLUMNS: tuple[str, ...] = (*_TIME_FEATURES, *_ROW_FEATURES, *_CROSS_FEATURES)


def _shift(g: np.ndarray, k: int) -> np.ndarray:
    """Value of k days earlier (NaN where that is before the grid)."""
    out = np.empty_like(g)
    k = min(k, g.shape[1])
    out[:, :k] = np.nan
    out[:, k:] = g[:, : g.shape[1] - k]
    return out


def _ffill(g: np.ndarray, limit: int) -> np.ndarray:
    out = g.copy()
    for k in range(1, limit + 1):
        hole = np.isnan(out)
        out[hole] = _shift(g, k)[hole]
    return out


def _window_sum_count(g: np.ndarray, days: int) -> tuple[np.ndarray, np.ndarray]:
    # Explicit shifts, not cumsum: the summation order is then the same in any window, so streaming
    # and batch results are bit-identical.
    total = np.zeros_like(g)
    count = np.zeros_like(g)
    for k in range(days):
        s = _shift(g, k)
        seen = ~np.isnan(s)
        total += np.where(seen, s, 0.0)
        count += seen
    return total, count


def _counter_diff(cur: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """Difference of a cumulative counter; NaN across a reset (repo deleted and re-created)."""
    diff = cur - prev
    reset = (diff < -0.5 * prev) & (prev >= 10)
    return np.where(reset, np.nan, diff)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out: np.ndarray = num / np.maximum(den, 1.0)
    return out


def _time_features(
    history: pd.DataFrame, codes: np.ndarray, day: np.ndarray, n_models: int, rows: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-model time-series features, gathered (float32) at the positions `rows` of `history`."""
    n_days = int(day.max()) + 1
    r_codes, r_day = codes[rows], day[rows]

    def pick(g: np.ndarray) -> np.ndarray:
        values: np.ndarray = g[r_codes, r_day].astype("float32")
        return values

    def grid(column: str) -> np.ndarray:
        g = np.full((n_models, n_days), np.nan)
        if column in history.columns:
            g[codes, day] = history[column].to_numpy(dtype="float64", na_value=np.nan)
        return g

    seen = np.full((n_models, n_days), np.nan)
    seen[codes, day] = 1.0
    d = grid("downloads")
    d_prev = _shift(d, 1)
    d_ff7 = _shift(_ffill(d, _FFILL_LIMIT), 7)
    d_sum, d_count = _window_sum_count(d, 7)
    rolling_mean_7 = d_sum / np.where(d_count > 0, d_count, np.nan)
    all_time = grid("downloads_all_time")
    delta_24h = all_time - _shift(all_time, 1)
    likes = grid("likes")
    likes_ff = _ffill(likes, _FFILL_LIMIT)
    likes_3, likes_6, likes_7 = _shift(likes_ff, 3), _shift(likes_ff, 6), _shift(likes_ff, 7)
    likes_7d = _counter_diff(likes, likes_7)
    rank = grid("trending_rank")
    _, seen_14 = _window_sum_count(seen, HISTORY_WINDOW_DAYS)
    since_prev = np.full_like(d, np.nan)
    for k in range(HISTORY_WINDOW_DAYS - 1, 0, -1):  # descending, so the nearest earlier day wins
        since_prev[~np.isnan(_shift(seen, k))] = k
    best_rank, ranked_7 = rank.copy(), (~np.isnan(rank)).astype("float64")
    for k in range(1, 7):
        earlier = _shift(rank, k)
        best_rank = np.fmin(best_rank, earlier)
        ranked_7 += ~np.isnan(earlier)
    # rank history over the whole window (NaN = unranked or absent that day)
    best_rank_14 = rank.copy()
    top10 = (rank <= 10).astype("float64")
    top25 = (rank <= 25).astype("float64")
    for k in range(1, HISTORY_WINDOW_DAYS):
        earlier = _shift(rank, k)
        best_rank_14 = np.fmin(best_rank_14, earlier)
        top10 += earlier <= 10
        top25 += earlier <= 25
    rank_sum, rank_count = _window_sum_count(rank, 7)
    # trendingScore proxy: likes of the last 7 days with the last 2 days counted twice (recent likes weigh more)
    likes_2d = _counter_diff(likes, _shift(likes_ff, 2))
    trend_score = np.where(np.isnan(likes_7d), 0.0, likes_7d) + np.where(np.isnan(likes_2d), 0.0, likes_2d)
    trend_score = np.where(np.isnan(likes_7d) & np.isnan(likes_2d), np.nan, trend_score)
    # downloads(t+7) = downloads(t) + next week's increments - the increments that leave the 30-day window;
    # a run rate (recent increments scaled to 30 days) above the rolling count means the count is rising,
    # and a window share near 1 (downloads ~ all-time) means the repo is younger than the 30-day window.
    all_time_ff = _ffill(all_time, _FFILL_LIMIT)
    inc_7d = all_time - _shift(all_time_ff, 7)
    inc_7d = np.where(inc_7d < 0, np.nan, inc_7d)
    inc_3d = all_time - _shift(all_time_ff, 3)
    inc_3d = np.where(inc_3d < 0, np.nan, inc_3d)
    return {
        "log_downloads": pick(np.log1p(d)),
        "lag_1_delta": pick(d - d_prev),
        "lag_1_growth": pick(_ratio(d - d_prev, d_prev)),
        "delta_downloads_24h": pick(np.where(delta_24h < 0, np.nan, delta_24h)),
        "rolling_mean_7": pick(rolling_mean_7),
        "downloads_vs_mean_7": pick(_ratio(d, rolling_mean_7)),
        "growth_rate_7d": pick(_ratio(d - d_ff7, d_ff7)),
        "delta_7d": pick(d - d_ff7),
        "log_likes": pick(np.log1p(likes)),
        "likes_1d": pick(_counter_diff(likes, _shift(likes, 1))),
        "likes_7d": pick(likes_7d),
        "likes_velocity_3d": pick(_counter_diff(likes, likes_3) / 3.0),
        "likes_acceleration": pick((_counter_diff(likes, likes_3) - _counter_diff(likes_3, likes_6)) / 3.0),
        "likes_growth_7d": pick(_ratio(likes_7d, likes_7)),
        "days_observed_14d": pick(seen_14),
        "days_since_prev_obs": pick(since_prev),
        "trending_rank": pick(rank),
        "rank_change_1d": pick(_shift(rank, 1) - rank),
        "rank_change_7d": pick(_shift(rank, 7) - rank),
        "best_rank_7d": pick(best_rank),
        "days_ranked_7d": pick(ranked_7),
        "best_rank_14d": pick(best_rank_14),
        "mean_rank_7d": pick(rank_sum / np.where(rank_count > 0, rank_count, np.nan)),
        "rank_change_3d": pick(_shift(rank, 3) - rank),
        "days_top10_14d": pick(top10),
        "days_top25_14d": pick(top25),
        "likes_2d": pick(likes_2d),
        "trend_score_proxy": pick(trend_score),
        "log_downloads_all_time": pick(np.log1p(all_time)),
        "window_share": pick(d / np.maximum(all_time, 1.0)),
        "inc_7d": pick(inc_7d),
        "inc_7d_run_rate": pick(_ratio(inc_7d * (30.0 / 7.0), d)),
        "inc_3d_run_rate": pick(_ratio(inc_3d * (30.0 / 3.0), d)),
    }


def _group_key(*codes: np.ndarray) -> np.ndarray:
    key = np.zeros(len(codes[0]), dtype="int64")
    for c in codes:
        key = key * (int(c.max()) + 1 if len(c) else 1) + c
    return key


def _cross_features(out: pd.DataFrame, day: np.ndarray, author_codes: np.ndarray) -> None:
    """Ranks and aggregates over the whole day's population (and within task and author)."""
    by_day = out.groupby(day, sort=False)
    for c in _DAY_RANKED:
        out[f"day_pct_{c}"] = by_day[c].rank(pct=True)
    task_codes, _ = pd.factorize(out["_task"], use_na_sentinel=False)
    task_key = _group_key(day, task_codes)
    by_task = out.groupby(task_key, sort=False)
    for c in _TASK_RANKED:
        out[f"task_pct_{c}"] = by_task[c].rank(pct=True)
    out["task_log_models"] = np.log1p(by_task["log_downloads"].transform("size").to_numpy(dtype="float64"))
    by_author = out.groupby(_group_key(day, author_codes), sort=False)
    out["author_log_models"] = np.log1p(by_author["log_downloads"].transform("size").to_numpy(dtype="float64"))
    out["author_log_downloads"] = np.log1p(by_author["_downloads"].transform("sum"))
    out["author_likes_7d"] = by_author["likes_7d"].transform("sum")
    out["author_best_rank"] = by_author["trending_rank"].transform("min")
    out["author_max_growth_7d"] = by_author["growth_rate_7d"].transform("max")
    # where the trendingScore proxy would place the model in the day's list (1 = highest)
    out["day_order_trend_score"] = by_day["trend_score_proxy"].rank(ascending=False, method="min")


def compute_features(history: pd.DataFrame, *, output_from: dt.date | pd.Timestamp | None = None) -> pd.DataFrame:
    """Features for every row of `history` dated on or after `output_from` (all rows when None).

    `history` is a typed history frame (hubpulse_common.history); missing optional columns are allowed.
    Returns the key columns plus FEATURE_COLUMNS (float32), rows in the input's order, index reset.
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
    # authors are split once per model, not once per row
    authors, _ = pd.factorize(pd.Series(np.asarray(models, dtype=object)).str.split("/", n=1).str[0])
    created = rows["created_at"] if "created_at" in rows.columns else pd.Series(pd.NaT, index=rows.index)
    age = (rows["snapshot_date"] - created).dt.total_seconds().to_numpy(dtype="float64", na_value=np.nan) / 86400
    out["age_days"] = np.clip(age, 0.0, None)
    out["day_of_week"] = rows["snapshot_date"].dt.day_of_week.to_numpy(dtype="float64")
    out["_task"] = rows["pipeline_tag"].to_numpy() if "pipeline_tag" in rows.columns else np.nan
    out["_downloads"] = rows["downloads"].fillna(0).to_numpy(dtype="float64")
    _cross_features(out, r_day, authors[r_codes])
    out = out.drop(columns=["_task", "_downloads"])
    out[list(FEATURE_COLUMNS)] = out[list(FEATURE_COLUMNS)].astype("float32")
    return out[["snapshot_date", "model_id", *FEATURE_COLUMNS]]


CROSS_FEATURE_COLUMNS: tuple[str, ...] = _CROSS_FEATURES


def cross_sectional_features(day_rows: pd.DataFrame) -> pd.DataFrame:
    """Recompute only the cross-sectional features of complete days from their stored time features.

    `day_rows`: snapshot_date, model_id, pipeline_tag, downloads and the time features (as
    compute_features returned them). A streaming caller that computed a day batch by batch (each batch
    ranked only against itself) calls this once the day is complete; it runs the same `_cross_features`
    as compute_features, so the result equals compute_features over the whole day. Returns the key
    columns plus CROSS_FEATURE_COLUMNS (float32), rows in the input's order.
    """
    dates = day_rows["snapshot_date"].to_numpy(dtype="datetime64[D]")
    day = (dates - dates.min()).astype("int64") if len(dates) else dates.astype("int64")
    out = pd.DataFrame({"snapshot_date": day_rows["snapshot_date"].to_numpy(), "model_id": day_rows["model_id"]})
    for name in _TIME_FEATURES:
        out[name] = day_rows[name].to_numpy(dtype="float32", na_value=np.nan)
    out["_task"] = day_rows["pipeline_tag"].to_numpy()
    out["_downloads"] = day_rows["downloads"].fillna(0).to_numpy(dtype="float64")
    codes, models = pd.factorize(day_rows["model_id"])
    authors, _ = pd.factorize(pd.Series(np.asarray(models, dtype=object)).str.split("/", n=1).str[0])
    _cross_features(out, day, authors[codes])
    out[list(_CROSS_FEATURES)] = out[list(_CROSS_FEATURES)].astype("float32")
    return out[["snapshot_date", "model_id", *_CROSS_FEATURES]].reset_index(drop=True)
