import numpy as np
import pandas as pd

from hubpulse_common.features import FEATURE_COLUMNS, HISTORY_WINDOW_DAYS, compute_features


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
