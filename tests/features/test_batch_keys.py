"""A batch's features are computed from its keys alone: the same rows as from its typed stats frame."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from features.support import hub_snapshots
from hubpulse_common.events import ModelSnapshot, ModelSnapshotBatch
from hubpulse_common.features import FEATURE_COLUMNS, HISTORY_WINDOW_DAYS
from hubpulse_common.synthetic import SyntheticHub
from hubpulse_features.service import batch_features, day_groups, records_frame, records_keys, snapshot_records


def test_batch_features_from_the_keys_equal_those_from_the_stats_frame() -> None:
    hub = SyntheticHub(400, 3, seed=5)
    history = [s for day in range(3) for s in hub_snapshots(hub, day, "bk-")]
    # a batch across two days, as a poll that spans midnight gives; its rows are stored before it is computed
    batch = snapshot_records(ModelSnapshotBatch.of_many(history[-500:]))
    window = records_frame(snapshot_records(ModelSnapshotBatch.of_many(history)))
    keys = records_keys(batch)
    full = records_frame(batch)
    pd.testing.assert_frame_equal(keys, full[["model_id", "snapshot_date"]])
    columns = ["model_id", "snapshot_date", *FEATURE_COLUMNS]
    got = batch_features(window, keys)
    assert list(got.columns) == columns

    def by_key(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.sort_values(["model_id", "snapshot_date"], ignore_index=True)

    pd.testing.assert_frame_equal(by_key(got), by_key(batch_features(window, full)[columns]))
    assert len(got) == len(batch)
    assert got["snapshot_date"].nunique() == 2


def test_a_batch_whose_window_holds_only_its_own_days_gives_the_same_rows() -> None:
    """The usual batch (one day's models, their window read as the handler reads it): its rows come straight from
    the window's features, without the merge; the same rows as the stats frame's merge gives."""
    hub = SyntheticHub(300, 3, seed=6)
    history = [s for day in range(3) for s in hub_snapshots(hub, day, "bw-")]
    last = max(s.snapshot_date for s in history)
    today = [s for s in history if s.snapshot_date == last][:200]
    ids = {s.model_id for s in today}
    batch = snapshot_records(ModelSnapshotBatch.of_many(today))
    window = records_frame(snapshot_records(ModelSnapshotBatch.of_many([s for s in history if s.model_id in ids])))
    columns = ["model_id", "snapshot_date", *FEATURE_COLUMNS]
    got = batch_features(window, records_keys(batch))
    assert list(got.columns) == columns
    assert len(got) == len(batch) == 200
    expected = batch_features(window, records_frame(batch))[columns]
    pd.testing.assert_frame_equal(
        got.sort_values("model_id", ignore_index=True), expected.sort_values("model_id", ignore_index=True)
    )


def test_far_apart_days_of_a_batch_are_computed_as_separate_groups() -> None:
    """A poll may mix a replayed far day with today's: each group's window spans its own days only."""
    day = dt.date(2025, 1, 1)
    near = day + dt.timedelta(days=HISTORY_WINDOW_DAYS - 1)  # its window reaches `day`
    far = near + dt.timedelta(days=HISTORY_WINDOW_DAYS)  # its window reaches neither

    def message(on: dt.date, name: str) -> ModelSnapshotBatch:
        return ModelSnapshotBatch.of([ModelSnapshot(model_id=name, snapshot_date=on, downloads=1, likes=0)])

    a, b, c, d = message(far, "a"), message(day, "b"), message(near, "c"), message(day, "d")
    assert day_groups([a, b, c, d]) == [[b, c, d], [a]]
    assert day_groups([b, c]) == [[b, c]]
    assert day_groups([a, c]) == [[c], [a]]
