import numpy as np
import pandas as pd
import pytest

from hubpulse_common.features import (
    FEATURE_COLUMNS,
    HISTORY_WINDOW_DAYS,
    author_codes,
    compute_features,
    group_ranks,
)


def test_streaming_day_by_day_equals_batch(history):
    """No train/serve skew: a day computed from the window alone equals the same day in the full history."""
    full = compute_features(history)
    days = sorted(history["snapshot_date"].unique())
    parts = []
    for day in days[::3]:
        window = history[
            (history["snapshot_date"] > day - pd.Timedelta(days=HISTORY_WINDOW_DAYS))
            & (history["snapshot_date"] <= day)
        ]
        parts.append(compute_features(window.sample(frac=1.0, random_state=0), output_from=day))
    streamed = pd.concat(parts).sort_values(["snapshot_date", "model_id"]).reset_index(drop=True)
    expected = full[full["snapshot_date"].isin(days[::3])].sort_values(["snapshot_date", "model_id"])
    pd.testing.assert_frame_equal(streamed, expected.reset_index(drop=True))


def test_one_row_per_model_day_with_float32_features(history):
    feats = compute_features(history)
    assert len(feats) == len(history)
    assert tuple(feats.columns) == ("snapshot_date", "model_id", *FEATURE_COLUMNS)
    assert (feats[list(FEATURE_COLUMNS)].dtypes == "float32").all()


def test_gaps_resets_and_missing_columns():
    day = pd.Timestamp("2025-01-01")
    frame = pd.DataFrame(
        {
            "snapshot_date": [day, day + pd.Timedelta(days=1), day + pd.Timedelta(days=3), day + pd.Timedelta(days=4)],
            "model_id": ["a/x"] * 4,
            "downloads": [100.0, 150.0, 300.0, 330.0],
            "likes": [40.0, 42.0, 44.0, 1.0],  # the last day is a counter reset
        }
    )
    feats = compute_features(frame).set_index(frame["snapshot_date"].dt.day)
    assert feats.loc[2, "lag_1_delta"] == 50.0
    assert feats["lag_1_delta"].isna()[4]  # yesterday (day 3) is missing
    assert feats.loc[4, "days_since_prev_obs"] == 2.0
    assert feats.loc[4, "rolling_mean_7"] == np.float32((100 + 150 + 300) / 3)
    assert feats["likes_1d"].isna()[5]  # no fake -43 likes velocity across the reset
    assert feats["trending_rank"].isna().all()
    assert feats["age_days"].isna().all()
    assert feats.loc[5, "day_pct_log_downloads"] == 1.0


def _one_model(n_days: int, **columns: list[float]) -> pd.DataFrame:
    day = pd.Timestamp("2025-01-01")
    frame = pd.DataFrame(
        {"snapshot_date": [day + pd.Timedelta(days=i) for i in range(n_days)], "model_id": ["a/x"] * n_days}
    )
    for name, values in columns.items():
        frame[name] = [float(v) for v in values]
    return frame


def test_trending_rank_window_features():
    ranks = [30, 8, 12, 40, 9, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150]
    frame = _one_model(16, downloads=[100] * 16, likes=list(range(0, 160, 10)), trending_rank=ranks)
    feats = compute_features(frame)
    # day 13 (0-based): window days 0..13 hold ranks 8 and 9 in the top 10, 8, 9 and 12 in the top 25
    assert feats.loc[13, "best_rank_14d"] == 8.0
    assert feats.loc[13, "days_top10_14d"] == 2.0
    assert feats.loc[13, "days_top25_14d"] == 3.0
    # day 15: day 1 (rank 8) has left the 14-day window
    assert feats.loc[15, "best_rank_14d"] == 9.0
    assert feats.loc[15, "days_top10_14d"] == 1.0
    assert feats.loc[6, "mean_rank_7d"] == np.float32(sum(ranks[:7]) / 7)
    assert feats.loc[5, "rank_change_3d"] == 12.0 - 50.0
    # 10 likes a day: 70 over 7 days + 20 over the last 2 counted twice
    assert feats.loc[10, "trend_score_proxy"] == 90.0
    assert feats.loc[10, "likes_2d"] == 20.0
    assert feats.loc[10, "day_order_trend_score"] == 1.0


def test_decayed_likes_and_gaps_to_the_top_k():
    # one like a day on days 11, 12 and 13 (0-based), and a gap (day 12 missing): likes gained inside the window
    # only, halved every 3 days back, counted on the day they are seen
    frame = _one_model(14, likes=[5.0] * 11 + [6.0, 7.0, 8.0], downloads=[10.0] * 14)
    frame = frame.drop(index=12).reset_index(drop=True)
    last = compute_features(frame).iloc[-1]
    assert last["likes_13d"] == 3.0
    # day 13's +2 (today, weight 1) and day 11's +1 (2 days back)
    assert last["likes_decay_3d"] == np.float32(2.0 + 0.5 ** (2 / 3))
    # a day of 12 ranked models: model i has a score of i likes today (gained from 0 yesterday), rank 12 - i
    day = pd.Timestamp("2025-01-01")
    rows = []
    for i in range(12):
        for t, likes in ((0, 0.0), (1, float(i))):
            rows.append(
                {"snapshot_date": day + pd.Timedelta(days=t), "model_id": f"o/m{i}", "likes": likes, "downloads": 1.0}
                | {"trending_rank": float(12 - i)}
            )
    feats = (
        compute_features(pd.DataFrame(rows)).set_index(["snapshot_date", "model_id"]).loc[day + pd.Timedelta(days=1)]
    )
    # the 10th highest score is 2 (scores 11..2), the model at rank 10 is m2 (score 2)
    assert feats.loc["o/m0", "likes_decay_order"] == 12.0
    assert feats.loc["o/m0", "likes_decay_gap_top10"] == np.float32(np.log1p(0.0) - np.log1p(2.0))
    assert feats.loc["o/m5", "likes_decay_gap_rank10"] == np.float32(np.log1p(5.0) - np.log1p(2.0))
    # m1: one like over the window (7/13 a week at that pace) against the 1 still missing to the 10th, + 0.5
    assert feats.loc["o/m1", "likes_catchup_top10"] == np.float32((7 / 13) / 1.5)


def test_surge_window_mechanics_features():
    all_time = [1000 + 100 * i for i in range(10)]  # 100 downloads a day
    frame = _one_model(10, downloads=[1500] * 10, downloads_all_time=all_time, likes=[0] * 10)
    feats = compute_features(frame)
    assert feats.loc[9, "inc_7d"] == 700.0
    assert feats.loc[9, "inc_7d_run_rate"] == np.float32(700 * 30 / 7 / 1500)
    assert feats.loc[9, "inc_3d_run_rate"] == np.float32(300 * 30 / 3 / 1500)
    assert feats.loc[9, "window_share"] == np.float32(1500 / 1900)
    assert feats["inc_7d"].isna()[:7].all()
    # a falling all-time counter (reset) gives no negative increment
    frame.loc[9, "downloads_all_time"] = 10.0
    assert np.isnan(compute_features(frame).loc[9, "inc_7d"])
    # files without downloads_all_time: the surge window features are missing, not zero
    assert compute_features(frame.drop(columns=["downloads_all_time"]))["inc_7d_run_rate"].isna().all()


def test_surge_projection_against_the_label_thresholds():
    """downloads(t+7) = downloads(t) + next week at the run rate - the days leaving the 30-day window."""
    # 100 downloads a day for months: A(t-30) = A(t) - downloads(t) = 3300 on the last day
    steady = [5000.0 + 100 * i for i in range(14)]
    frame = _one_model(14, downloads=[3000] * 14, downloads_all_time=steady, likes=[0] * 14)
    last = compute_features(frame).loc[13]
    # what leaves next week: 7/17 of what was downloaded over t-29..t-13 (A(t-13) - A(t-30) = 1700)
    assert last["leave_share_7d"] == np.float32(700 / 3000)
    assert last["proj_ratio_3d"] == np.float32(1.0)  # 700 in at 100 a day, 700 out
    assert last["surge_gap_3d"] == np.float32(np.log(1 / 1000))  # no gain: far below +1000
    # the last 3 days at 1000 a day: projected 5700 + 7000 - 700 = 12000 >= 2 x 5700 and +6300 >= 1000
    jump = [*steady[:11], 6000.0 + 1000, 6000.0 + 2000, 6000.0 + 3000]
    rolling = [3000.0] * 11 + [a - 3300.0 for a in jump[11:]]  # downloads(t) = A(t) - A(t-30)
    frame = _one_model(14, downloads=rolling, downloads_all_time=jump, likes=[0] * 14)
    last = compute_features(frame).loc[13]
    assert last["proj_ratio_3d"] == np.float32(12000 / 5700)
    assert last["surge_gap_3d"] == np.float32(np.log(12000 / 11400))
    assert last["surge_gap_3d"] > 0 > last["surge_gap_7d"]  # the 7-day rate dilutes the jump
    # yesterday's 1000 against the week's (3000 + 400) / 7
    assert last["rate_accel_1d_7d"] == np.float32(np.log(1001 / (3400 / 7 + 1)))
    assert last["surge_gap_1d"] == last["surge_gap_3d"]  # 1000 a day over the last 1 and 3 days
    assert last["author_max_surge_gap"] == last["surge_gap_3d"]
    # without downloads_all_time the projection falls back on the rolling count's own changes
    bare = compute_features(frame.drop(columns=["downloads_all_time"]))
    assert np.isfinite(bare.loc[13, "surge_gap_3d"])
    assert bare.loc[13, "surge_gap_3d"] > 0


def test_features_at_kept_rows_in_model_blocks_equal_the_full_computation(history):
    """Training computes features only for the rows it keeps, a block of models at a time: same values."""
    from hubpulse_common.features import compute_features_at

    full = compute_features(history)
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(len(history), 700, replace=False))
    for block in (7, 50, 1000):  # many blocks, a few, one
        got = compute_features_at(history, rows, block_models=block)
        pd.testing.assert_frame_equal(got, full.iloc[rows].reset_index(drop=True))
    # rows in any order, one day only, and a frame whose optional columns are missing
    shuffled = rng.permutation(rows)[:50]
    pd.testing.assert_frame_equal(compute_features_at(history, shuffled), full.iloc[shuffled].reset_index(drop=True))
    one_day = np.flatnonzero(history["snapshot_date"] == history["snapshot_date"].max())[:5]
    pd.testing.assert_frame_equal(compute_features_at(history, one_day), full.iloc[one_day].reset_index(drop=True))
    bare = history.drop(columns=["downloads_all_time", "trending_rank", "pipeline_tag", "created_at"])
    pd.testing.assert_frame_equal(
        compute_features_at(bare, rows, block_models=13), compute_features(bare).iloc[rows].reset_index(drop=True)
    )


def test_features_at_read_float32_counts_exactly(history):
    """The Hub-scale bench holds exact counts as float32: the features are those of the float64 history."""
    from hubpulse_common.features import compute_features_at

    small = history.astype({c: "float32" for c in ("downloads", "downloads_all_time", "likes", "trending_rank")})
    rows = np.arange(0, len(history), 5)
    pd.testing.assert_frame_equal(
        compute_features_at(small, rows, block_models=40), compute_features(history).iloc[rows].reset_index(drop=True)
    )


def test_author_codes_number_authors_as_factorize_does() -> None:
    models = ["a/x", "b/y", "a/z", "gpt2", "b/w/extra", "gpt2-medium", "a/"]
    expected, _ = pd.factorize(pd.Series(models).str.split("/", n=1).str[0])
    assert author_codes(models).tolist() == expected.tolist() == [0, 1, 0, 2, 1, 3, 0]
    assert author_codes([]).tolist() == []
    assert author_codes(pd.Index(models)).tolist() == author_codes(pd.Series(models)).tolist() == expected.tolist()


@pytest.mark.parametrize("groups", [None, "few", "many", "one"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_group_ranks_are_pandas_grouped_ranks(groups: str | None, dtype: str) -> None:
    """Exactly the values pandas gives (not merely close): the close's ranks and the training frames' must not drift."""
    rng = np.random.default_rng(7)
    n = 5_000
    values = rng.integers(-20, 20, n).astype(dtype)  # many ties
    values[rng.random(n) < 0.2] = np.nan
    values[:3] = [np.inf, -np.inf, -0.0]
    codes = {
        None: None,
        "few": rng.integers(0, 3, n),
        "many": rng.integers(0, 40_000, n),  # beyond 16-bit codes
        "one": np.full(n, 5),
    }[groups]
    series = pd.Series(values)
    by = series.groupby(codes if codes is not None else np.zeros(n, dtype=int), sort=False)
    np.testing.assert_array_equal(group_ranks(values, codes), by.rank(pct=True).to_numpy())
    np.testing.assert_array_equal(
        group_ranks(values, codes, descending_min=True), by.rank(ascending=False, method="min").to_numpy()
    )


def test_group_ranks_of_nothing_ranked() -> None:
    assert group_ranks(np.array([], dtype="float32")).tolist() == []
    assert np.isnan(group_ranks(np.array([np.nan, np.nan]), np.array([0, 1]))).all()
