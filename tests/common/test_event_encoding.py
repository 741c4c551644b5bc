"""The bulk event encoder: its field names come from the event class, and its bytes validate back."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from hubpulse_common.encoding import EncoderMismatch, EventEncoder
from hubpulse_common.events import ModelScore, ModelSnapshot

SCORE = {
    "model_id": "org/model",
    "snapshot_date": dt.date(2026, 12, 3),
    "model_version": "v1",
    "label": "trending",
    "horizon_days": 7,
    "probability": np.float64(0.62),
    "threshold": 0.38,
}


def test_an_encoded_score_validates_back_with_its_spliced_explanation() -> None:
    at = dt.datetime(2026, 12, 3, 4, 33, tzinfo=dt.UTC)
    explanation = '[{"feature":"likes_7d","value":null,"contribution":0.7}]'
    body = EventEncoder(ModelScore, at, raw=("top_features",)).encode(SCORE, explanation)
    event = ModelScore.model_validate_json(body)
    assert event.occurred_at == at
    assert event.probability == 0.62
    assert event.top_features[0].feature == "likes_7d"
    assert event.model_dump(exclude={"occurred_at", "top_features"}) == {
        **SCORE,
        "schema_version": 1,
        "probability": 0.62,
    }


def test_fields_that_are_not_the_events_are_refused() -> None:
    with pytest.raises(EncoderMismatch, match=r"missing \['threshold'\], unknown \['thresh'\]"):
        EventEncoder(ModelScore, raw=("top_features",)).encode(
            {**{k: v for k, v in SCORE.items() if k != "threshold"}, "thresh": 0.4}, "[]"
        )
    with pytest.raises(EncoderMismatch, match="0 raw values for 1"):
        EventEncoder(ModelScore, raw=("top_features",)).encode(SCORE)


def test_nan_is_written_as_null() -> None:
    snapshot = dict.fromkeys(set(ModelSnapshot.model_fields) - {"schema_version", "occurred_at"})
    snapshot |= {"model_id": "a/b", "snapshot_date": "2026-12-03", "downloads": 1, "likes": 2, "tags": []}
    snapshot |= {"source": "hub", "trending_score": math.nan}
    event = ModelSnapshot.model_validate_json(EventEncoder(ModelSnapshot).encode(snapshot))
    assert event.trending_score is None
