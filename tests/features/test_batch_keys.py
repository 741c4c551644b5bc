"""A batch's features are computed from its keys alone: the same rows as from its typed stats frame."""

from __future__ import annotations

import pandas as pd

from features.support import hub_snapshots
from hubpulse_common.events import ModelSnapshotBatch
from hubpulse_common.features import FEATURE_COLUMNS
from hubpulse_common.synthetic import SyntheticHub
from hubpulse_features.service import batch_features, records_frame, records_keys, snapshot_records


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
    pd.testing.assert_frame_equal(got, batch_features(window, full)[columns])
    assert len(got) == len(batch)
    assert got["snapshot_date"].nunique() == 2
