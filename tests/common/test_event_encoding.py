"""The bulk event encoder: its field names come from the event class, and its bytes validate back."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from hubpulse_common.encoding import EncoderMismatch, EventEncoder, json_dates, json_floats, json_strings
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


def test_events_encoded_by_column_are_the_events_encoded_one_by_one() -> None:
    at = dt.datetime(2026, 12, 3, 4, 33, tzinfo=dt.UTC)
    encoder = EventEncoder(ModelScore, at, raw=("top_features",))
    # a quote, a backslash, non-ASCII and a `%` (the template's own mark) in the text; two days; tiny and exact floats
    ids = ['org/"quoted"', "org/back\\slash", "org/naïve-模型", "org/100%"]
    days = [dt.date(2026, 12, 3), dt.date(2026, 12, 2), dt.date(2026, 12, 3), dt.date(2026, 12, 3)]
    probability = np.array([0.1 + 0.2, 1e-300, 5e-324, 1.0])
    explanations = ["[]", '[{"feature":"likes_7d","value":null,"contribution":0.7}]', "[]", "[]"]
    constants = {"model_version": "v%s 100%", "label": "trending", "horizon_days": 7, "threshold": 0.38}
    columns = {
        "model_id": json_strings(ids),
        "snapshot_date": json_dates(days),
        "probability": json_floats(probability),
    }
    bulk = encoder.encode_columns(constants, columns, explanations)
    one_by_one = [
        encoder.encode({**constants, "model_id": m, "snapshot_date": d, "probability": p}, e)
        for m, d, p, e in zip(ids, days, probability.tolist(), explanations, strict=True)
    ]
    assert [ModelScore.model_validate_json(b) for b in bulk] == [ModelScore.model_validate_json(b) for b in one_by_one]
    assert [ModelScore.model_validate_json(b).probability for b in bulk] == probability.tolist()


def test_floats_by_column_write_nan_and_infinities_as_null() -> None:
    assert json_floats(np.array([0.5, math.nan, math.inf, -math.inf, np.float32(0.1)])) == [
        "0.5",
        "null",
        "null",
        "null",
        repr(float(np.float32(0.1))),
    ]


def test_columns_that_are_not_the_events_are_refused() -> None:
    encoder = EventEncoder(ModelScore, raw=("top_features",))
    constants = {k: v for k, v in SCORE.items() if k not in ("model_id", "threshold")}
    with pytest.raises(EncoderMismatch, match=r"missing \['threshold'\]"):
        encoder.encode_columns(constants, {"model_id": ['"a/b"']}, ["[]"])
    with pytest.raises(EncoderMismatch, match="0 raw values for 1"):
        encoder.encode_columns({**constants, "threshold": 0.4}, {"model_id": ['"a/b"']})
