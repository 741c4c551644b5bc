"""The synthetic Hub: deterministic, heavy-tailed, with surges that likes announce before downloads."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from hubpulse_common.synthetic import SyntheticHub

CONTRACT = [
    "snapshot_date",
    "model_id",
    "downloads",
    "downloads_all_time",
    "likes",
    "pipeline_tag",
    "library_name",
    "created_at",
    "trending_rank",
]


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return SyntheticHub(4000, 45, seed=5).history()


def test_same_seed_same_hub_other_seed_other_hub():
    a, b, c = SyntheticHub(500, 10, seed=1), SyntheticHub(500, 10, seed=1), SyntheticHub(500, 10, seed=2)
    pd.testing.assert_frame_equal(a.day(7), b.day(7))
    assert not a.day(7)["downloads"].equals(c.day(7)["downloads"])
    # a day does not depend on which days were generated before it
    pd.testing.assert_frame_equal(a.day(3), SyntheticHub(500, 10, seed=1).day(3))


def test_contract_columns_and_types(history: pd.DataFrame):
    assert set(CONTRACT) <= set(history.columns)
    assert {"trending_score", "tags", "author", "last_modified"} <= set(history.columns)
    assert history.groupby("snapshot_date", observed=True)["model_id"].apply(lambda s: s.is_unique).all()
    day = history[history["snapshot_date"] == "2025-01-10"]
    ranks = day["trending_rank"].dropna()
    assert sorted(ranks) == list(range(1, len(ranks) + 1))
    pd.to_datetime(day["created_at"], format="%Y-%m-%dT%H:%M:%S.%fZ")  # the Hub's createdAt format


def test_counters_are_consistent(history: pd.DataFrame):
    for column in ("likes", "downloads_all_time"):
        wide = history.pivot(index="model_id", columns="snapshot_date", values=column).astype("float64").to_numpy()
        steps = np.diff(wide, axis=1)
        assert (steps[~np.isnan(steps)] >= 0).all(), f"{column} went down"
    assert (history["downloads_all_time"] >= history["downloads"]).all()


def test_heavy_tail_and_new_releases(history: pd.DataFrame):
    first = history[history["snapshot_date"] == "2025-01-01"]
    downloads = np.sort(first["downloads"].to_numpy())[::-1]
    assert downloads[: len(downloads) // 100].sum() > 0.5 * downloads.sum()  # top 1% hold most downloads
    assert np.median(downloads) < 100 < downloads[0] / 100
    counts = history.groupby("snapshot_date", observed=True).size()
    assert counts.iloc[-1] > counts.iloc[0]  # new repos appear


def _surges(history: pd.DataFrame, horizon: int = 7) -> pd.DataFrame:
    wide = history.pivot(index="model_id", columns="snapshot_date", values="downloads").astype("float64")
    now, later = wide.iloc[:, :-horizon].to_numpy(), wide.iloc[:, horizon:].to_numpy()
    label = (later >= 2 * now) & (later - now >= 1000)
    likes = history.pivot(index="model_id", columns="snapshot_date", values="likes").astype("float64").to_numpy()
    velocity = np.full_like(likes, np.nan)
    velocity[:, 3:] = likes[:, 3:] - likes[:, :-3]
    velocity = velocity[:, :-horizon]
    known = ~np.isnan(now) & ~np.isnan(later) & ~np.isnan(velocity)
    return pd.DataFrame({"label": label[known], "likes_velocity": velocity[known], "downloads": now[known]})


def test_surges_exist_and_likes_lead_them_but_not_trivially(history: pd.DataFrame):
    rows = _surges(history)
    rate = rows["label"].mean()
    assert 0.0005 < rate < 0.05, rate
    # likes velocity separates surges better than chance...
    from sklearn.metrics import roc_auc_score

    auc = roc_auc_score(rows["label"], rows["likes_velocity"])
    assert 0.65 < auc < 0.99, auc


def test_weekly_rhythm_in_daily_downloads():
    hub = SyntheticHub(3000, 28, seed=9)
    totals = np.array([hub.day(d)["downloads_all_time"].astype("float64").sum() for d in range(28)])
    daily = np.diff(totals)
    weekday = np.array([(hub.start_date + dt.timedelta(days=d)).weekday() for d in range(1, 28)])
    by_weekday = pd.Series(daily).groupby(weekday).mean()
    assert by_weekday.max() / by_weekday.min() > 1.05


def test_argument_checks():
    with pytest.raises(ValueError, match="n_models"):
        SyntheticHub(0, 5)
    with pytest.raises(ValueError, match="day must be"):
        SyntheticHub(10, 5).day(5)


def test_featured_repos_are_listed_like_any_model_with_their_own_task() -> None:
    featured = {"hubpulse-demo/tiny-text-classifier": ("text-classification", "onnx")}
    plain, hub = SyntheticHub(300, 20, seed=4), SyntheticHub(300, 20, seed=4, featured=featured)
    day, before = hub.day(19), plain.day(19)
    row = day[day["model_id"].astype(str) == "hubpulse-demo/tiny-text-classifier"]
    assert len(row) == 1
    assert str(row["pipeline_tag"].iloc[0]) == "text-classification"
    assert str(row["library_name"].iloc[0]) == "onnx"
    assert str(row["author"].iloc[0]) == "hubpulse-demo"
    # it takes one model's place and keeps that model's numbers: the rest of the Hub is unchanged
    assert len(day) == len(before)
    assert day["downloads"].tolist() == before["downloads"].tolist()
    assert (day["model_id"].astype(str) != before["model_id"].astype(str)).sum() == 1


def test_extended_days_continue_the_hub_whatever_the_steps() -> None:
    """The demo clock: days past the history keep every model's dynamics, add new models (some of them rising at
    launch), and do not depend on how the Hub got there; the history itself is unchanged."""
    featured = {"hubpulse-demo/tiny-text-classifier": ("text-classification", "onnx")}
    stepped, jumped = (
        SyntheticHub(2000, 30, seed=2, featured=featured),
        SyntheticHub(2000, 30, seed=2, featured=featured),
    )
    history = stepped.day(29)
    for days in range(31, 61):
        stepped.extend(days)
    jumped.extend(60)
    last = stepped.day(59)
    pd.testing.assert_frame_equal(last, jumped.day(59))
    pd.testing.assert_frame_equal(stepped.day(29), history)
    assert stepped.dates[-1] == stepped.start_date + dt.timedelta(days=59)
    old = last[last["model_id"].isin(history["model_id"])].set_index("model_id")
    before = history.set_index("model_id").loc[old.index]
    assert (old["downloads_all_time"].astype("int64") >= before["downloads_all_time"].astype("int64")).all()
    new = last[~last["model_id"].isin(history["model_id"])]
    assert 60 <= len(new) <= 180  # about 0.002 x 2000 a day for 30 days
    assert (new["likes"] > 0).sum() >= 10  # some catch on
    assert "hubpulse-demo/tiny-text-classifier" in set(last["model_id"])
