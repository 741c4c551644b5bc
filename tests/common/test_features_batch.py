"""hub.features.v2 and v3: one message per slice of a day, column by column; each stands for the same rows as v1."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from hubpulse_common.events import ALL_TOPICS, ModelFeatures, ModelFeaturesBatch, ModelFeaturesPacked


def example() -> dict[str, Any]:
    documented: dict[str, Any] = ModelFeaturesBatch.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index,call-overload]
    return dict(documented)


def test_the_documented_example_validates_and_stands_for_its_v1_rows() -> None:
    batch = ModelFeaturesBatch.model_validate(example())
    rows = batch.as_v1()
    assert [r.model_id for r in rows] == ["Qwen/Qwen3-0.6B", "acme/tiny-bert"]
    assert rows[1] == ModelFeatures(
        occurred_at=batch.occurred_at,
        model_id="acme/tiny-bert",
        snapshot_date=batch.snapshot_date,
        features={"log_downloads": 2.565, "growth_rate_7d": None, "day_pct_log_downloads": 0.112},
        downloads=12,
        downloads_all_time=None,
        likes=0,
        trending_rank=None,
        pipeline_tag="fill-mask",
        library_name=None,
        author="acme",
        tags=[],
        created_at=batch.created_at[1],
        last_modified=None,
        renamed_from="acme/bert-tiny",
        day_models=1843207,
    )
    assert rows[0].renamed_from is None
    again = ModelFeaturesBatch.of(rows, occurred_at=batch.occurred_at)
    assert again == batch
    assert batch.key() == "2026-12-03/Qwen/Qwen3-0.6B"
    assert "hub.features.v2" in ALL_TOPICS


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"likes": [1]}, "likes do not"),
        ({"features": {"log_downloads": [1.0]}}, "features.log_downloads do not"),
        ({"model_id": ["a/b", "a/b"]}, "repeats a model"),
        ({"renamed_from": {"x/y": "x/z"}}, "not in the message"),
        ({"model_id": []}, "at least 1"),
    ],
)
def test_a_malformed_batch_is_refused_naming_what_is_wrong(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelFeaturesBatch.model_validate({**example(), **change})


def test_a_batch_carries_one_day() -> None:
    rows = ModelFeaturesBatch.model_validate(example()).as_v1()
    other = rows[1].model_copy(update={"snapshot_date": rows[1].snapshot_date.replace(day=4)})
    with pytest.raises(ValueError, match="one day's rows, not 2"):
        ModelFeaturesBatch.of([rows[0], other])


# ---- hub.features.v3: the same rows, each feature's column packed -------------------------------------------------


def packed_example() -> dict[str, Any]:
    documented: dict[str, Any] = ModelFeaturesPacked.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index,call-overload]
    return dict(documented)


def test_the_documented_v3_example_stands_for_the_v2_examples_rows() -> None:
    packed = ModelFeaturesPacked.model_validate(packed_example())
    v2 = ModelFeaturesBatch.model_validate(example())
    # binary32 columns carry their values as binary32 (log_downloads 15.921 is 15.92099952697754 there)
    binary64 = {"day_pct_log_downloads"}  # packed as <f8: exact
    expected = [
        r.model_copy(
            update={
                "features": {
                    k: v if v is None or k in binary64 else float(np.float32(v)) for k, v in r.features.items()
                }
            }
        )
        for r in v2.as_v1()
    ]
    assert packed.as_v1() == expected
    assert packed.key() == v2.key()
    assert "hub.features.v3" in ALL_TOPICS


def test_v3_round_trips_values_exactly_in_the_narrowest_type() -> None:
    rows = ModelFeaturesBatch.model_validate(example()).as_v1()
    rows[0].features["wide"] = 0.1  # not a binary32: stays binary64
    rows[1].features["wide"] = float("nan")
    rows[0].features["narrow"] = 0.5
    packed = ModelFeaturesPacked.of(rows)
    assert packed.features["wide"].dtype == "<f8"
    assert packed.features["narrow"].dtype == "<f4"
    again = ModelFeaturesPacked.model_validate_json(packed.model_dump_json())
    assert again.feature_values("wide")[0] == 0.1
    assert np.isnan(again.feature_values("wide")[1])
    assert np.isnan(again.feature_values("narrow")[1])  # missing in row 1: NaN
    # 15.921 is not a binary32: the column stays binary64, exact
    assert packed.features["log_downloads"].dtype == "<f8"
    assert [r.features["log_downloads"] for r in again.as_v1()] == [15.921, 2.565]


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ({"dtype": "<f4", "data": "AACAPw=="}, "features.log_downloads do not"),  # one value for two rows
        ({"dtype": "<f4", "data": "AACAPwAAwH"}, "not base64"),
        ({"dtype": "<f4", "data": "AACA*wAAwH8="}, "not base64"),
        ({"dtype": "<f8", "data": "AAAAAAAAAAAAAAAA"}, "features.log_downloads do not"),  # 12 bytes: 1.5 values
        ({"dtype": ">f4", "data": "AACAPwAAwH8="}, "dtype"),
        ({"dtype": "<f4"}, "data"),
    ],
)
def test_a_malformed_packed_column_is_refused_naming_what_is_wrong(column: dict[str, str], message: str) -> None:
    document = packed_example()
    document["features"] = {**document["features"], "log_downloads": column}
    with pytest.raises(ValidationError, match=message):
        ModelFeaturesPacked.model_validate(document)
