"""hub.features.v2: one message per slice of a day, column by column; it stands for the same rows as v1."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from hubpulse_common.events import ALL_TOPICS, ModelFeatures, ModelFeaturesBatch


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
