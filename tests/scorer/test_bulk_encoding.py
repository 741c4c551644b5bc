"""Events we encode in bulk (features, scores) validate as their pydantic models; top-k equals a stable sort."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd

from hubpulse_common.events import ModelFeatures, ModelScore
from hubpulse_common.features import FEATURE_COLUMNS
from hubpulse_features import service as features
from hubpulse_scorer import service as scorer
from hubpulse_scorer.model.explain import top_columns


def _feature_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 6
    frame = pd.DataFrame(
        {
            "snapshot_date": pd.to_datetime(["2025-01-02"] * n),
            "model_id": [f"org/m{i}" for i in range(n - 1)] + ["legacy"],
            "downloads": [5.0, np.nan, 0.0, 1e9, 3.0, 7.0],
            "downloads_all_time": [10.0, np.nan, 1.0, 2e9, 3.0, np.nan],
            "likes": [1.0, 2.0, 0.0, 5.0, np.nan, 0.0],
            "pipeline_tag": ["text-generation", np.nan, None, "fill-mask", "x", "y"],
            "library_name": [np.nan, "transformers", "gguf", None, "a", "b"],
            "author": ["org", "org", "org", "org", "org", np.nan],
            "tags": [["a", "b"], [], ["c"], np.nan, ("d",), []],
            "created_at": pd.to_datetime(
                ["2024-01-01 10:00:00.123", None, "2020-05-05 00:00:00.000", None, None, None], format="ISO8601"
            ),
            "last_modified": pd.to_datetime([None, "2024-02-02 00:00:01", None, None, None, None], format="ISO8601"),
        }
    )
    values = rng.normal(size=(n, len(FEATURE_COLUMNS))).astype("float32")
    values[rng.random(values.shape) < 0.3] = np.nan
    values[0, 0] = np.inf
    out = pd.concat([frame, pd.DataFrame(values, columns=list(FEATURE_COLUMNS))], axis=1)
    out["trending_rank"] = np.asarray([np.nan, 1.0, 2.0, np.nan, np.nan, 3.0], dtype="float32")  # stat and feature
    return out


def _reference(row: pd.Series, provisional: bool) -> ModelFeatures:
    """The event as pydantic builds it from the same row."""

    def num(v: object) -> int | None:
        return None if pd.isna(v) else int(v)  # type: ignore[call-overload]

    def text(v: object) -> str | None:
        return None if v is None or pd.isna(v) else str(v)  # type: ignore[arg-type]

    def time(v: pd.Timestamp) -> dt.datetime | None:
        return None if pd.isna(v) else v.to_pydatetime().replace(tzinfo=dt.UTC)

    feats = {c: (None if not np.isfinite(v := float(row[c])) else v) for c in FEATURE_COLUMNS}
    return ModelFeatures(
        model_id=row["model_id"],
        snapshot_date=row["snapshot_date"].date(),
        features=feats,
        provisional=provisional,
        downloads=num(row["downloads"]),
        downloads_all_time=num(row["downloads_all_time"]),
        likes=num(row["likes"]),
        trending_rank=num(row["trending_rank"]),
        pipeline_tag=text(row["pipeline_tag"]),
        library_name=text(row["library_name"]),
        author=text(row["author"]),
        tags=list(row["tags"]) if isinstance(row["tags"], list | tuple) else [],
        created_at=time(row["created_at"]),
        last_modified=time(row["last_modified"]),
    )


def test_feature_payloads_validate_as_the_pydantic_events() -> None:
    frame = _feature_frame()
    for provisional in (True, False):
        payloads = features.feature_payloads(frame, provisional=provisional)
        assert len(payloads) == len(frame)
        for (key, value), (_, row) in zip(payloads, frame.iterrows(), strict=True):
            event = ModelFeatures.model_validate_json(value)
            expected = _reference(row, provisional)
            assert key == expected.key().encode()
            assert event.model_dump(exclude={"occurred_at"}) == expected.model_dump(exclude={"occurred_at"})
            assert event.occurred_at.tzinfo is not None


def test_score_payloads_validate_and_match_the_rows(challenger) -> None:
    frame = _feature_frame()
    events = [ModelFeatures.model_validate_json(v) for _, v in features.feature_payloads(frame, provisional=True)]
    scored = scorer.score(challenger, events, top_n=5)
    payloads = scorer.score_payloads(scored)
    records = scorer.score_records(scored)
    catalog, daily = scorer.catalog_records(scored)
    assert len(payloads) == len(records) == len(daily) == len(catalog) == len(events)
    x = scorer.features_matrix(events, challenger.feature_columns)
    for i, ((key, value), event) in enumerate(zip(payloads, events, strict=True)):
        score = ModelScore.model_validate_json(value)
        assert key == event.model_id.encode()
        assert (score.model_id, score.snapshot_date, score.model_version) == (
            event.model_id,
            event.snapshot_date,
            challenger.metadata.version,
        )
        assert score.probability == records[i][5] == float(scored.probability[i])
        assert len(score.top_features) == 5
        magnitudes = [abs(c.contribution) for c in score.top_features]
        assert magnitudes == sorted(magnitudes, reverse=True)
        for c in score.top_features:
            v = x[i, challenger.feature_columns.index(c.feature)]
            assert c.value == (None if np.isnan(v) else float(v))
        # the explanation stored in scores and the catalog is the event's top_features
        assert [c.model_dump() for c in score.top_features] == json.loads(records[i][7])
    explanation = scorer.CATALOG_COLUMNS.index("explanation")
    assert {row[0]: row[explanation] for row in catalog} == {r[1]: r[7] for r in records}


def test_top_columns_equals_a_stable_sort_with_ties() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        rows, cols = int(rng.integers(1, 40)), int(rng.integers(1, 12))
        c = rng.normal(size=(rows, cols)).astype("float32")
        c[rng.random(c.shape) < 0.4] = 0.0  # ties at zero (features the trees never use)
        c[rng.random(c.shape) < 0.2] = 0.5
        c[rng.random(c.shape) < 0.1] = -0.5
        for k in (1, 3, 5, 20):
            expected = np.argsort(-np.abs(c), axis=1, kind="stable")[:, : min(k, cols)]
            np.testing.assert_array_equal(top_columns(c, k), expected)
