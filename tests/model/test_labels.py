import numpy as np
import pandas as pd
import pytest

from hubpulse_common.errors import InputError
from hubpulse_scorer.model.labels import surge_labels, trending_labels


def _frame(series: dict[str, list[float | None]], column: str) -> pd.DataFrame:
    rows = [
        {"snapshot_date": pd.Timestamp("2025-01-01") + pd.Timedelta(days=t), "model_id": m, column: v}
        for m, values in series.items()
        for t, v in enumerate(values)
        if v is not None or column != "downloads"
    ]
    frame = pd.DataFrame(rows)
    frame[column] = frame[column].astype("float64")
    return frame


def test_trending_enters_top_k_within_horizon():
    # a: outside top 2 on days 0-1, enters on day 2. b: always top. c: never. Horizon 2 over 5 days.
    frame = _frame({"a": [5, 4, 2, 1, 3], "b": [1, 1, 1, 2, 1], "c": [6, 6, None, 6, 6]}, "trending_rank")
    label = trending_labels(frame, top_k=2, horizon=2)
    got = dict(zip(zip(frame["model_id"], frame["snapshot_date"].dt.day, strict=True), label, strict=True))
    assert got[("a", 1)] == 1.0  # day 2 is within 1..2 days ahead
    assert got[("a", 2)] == 1.0
    assert np.isnan(got[("a", 3)])  # inside the top K: nothing to predict
    assert np.isnan(got[("b", 1)])
    assert got[("c", 1)] == 0.0  # an unranked day (None) counts as outside the top K
    assert np.isnan(got[("a", 4)])  # the horizon runs past the history
    assert np.isnan(got[("c", 5)])


def test_trending_needs_ranks():
    frame = _frame({"a": [None, None]}, "trending_rank")
    with pytest.raises(InputError, match="trending_rank"):
        trending_labels(frame)


def test_surge_needs_doubling_and_min_delta():
    frame = _frame({"a": [1000, 0, 2000], "b": [10, 0, 900], "c": [5000, 0, 9000], "d": [0, 0, None]}, "downloads")
    label = surge_labels(frame, horizon=2)
    got = dict(zip(zip(frame["model_id"], frame["snapshot_date"].dt.day, strict=True), label, strict=True))
    assert got[("a", 1)] == 1.0  # x2 and +1000
    assert got[("b", 1)] == 0.0  # x90 but only +890
    assert got[("c", 1)] == 0.0  # +4000 but x1.8
    assert np.isnan(got[("d", 1)])  # the day t+H is missing
    assert np.isnan(got[("a", 2)])
    assert surge_labels(frame, horizon=2, ratio=1.5, min_delta=500)[frame.index[frame.model_id == "c"][0]] == 1.0
