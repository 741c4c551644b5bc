"""Events we encode in bulk (features v1 and v2, scores v1 and v2) validate as their pydantic models; the scorer's
rows from hub.features.v3 columns give what the v1 events gave; top-k equals a stable sort."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from pydantic_core import to_json

from hubpulse_common import feature_vectors
from hubpulse_common.events import (
    FEATURES_BATCH_BYTES,
    ModelFeatures,
    ModelFeaturesBatch,
    ModelFeaturesPacked,
    ModelScore,
    ModelScoresBatch,
)
from hubpulse_common.features import FEATURE_COLUMNS
from hubpulse_common.kafka import partition_slots
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


@pytest.mark.parametrize("event", [ModelFeaturesPacked, ModelFeaturesBatch])
def test_feature_batches_validate_back_to_exactly_the_rows_v1_carried(
    event: type[ModelFeaturesPacked] | type[ModelFeaturesBatch],
) -> None:
    """v3 (the features packed) and v2 (JSON numbers) carry the same rows as v1, value for value."""
    frame = _feature_frame()
    renamed = {"org/m1": "org/old-m1"}
    v1 = [
        ModelFeatures.model_validate_json(value)
        for _, value in features.feature_payloads(frame, provisional=False, renamed_from=renamed, day_models=9)
    ]
    pairs = features.feature_batches(frame, renamed_from=renamed, day_models=9, partitions=1, rows=4, event=event)
    messages = [event.model_validate_json(value) for _, value in pairs]
    assert [m.rows for m in messages] == [4, 2]
    assert [key for key, _ in pairs] == [m.key().encode() for m in messages]
    assert messages[0].renamed_from == renamed
    assert messages[1].renamed_from == {}
    rows = [row for m in messages for row in m.as_v1()]
    assert [r.model_dump(exclude={"occurred_at"}) for r in rows] == [e.model_dump(exclude={"occurred_at"}) for e in v1]
    # and each is the event pydantic builds from the frame's row
    for row, (_, expected) in zip(rows, frame.iterrows(), strict=True):
        reference = _reference(expected, provisional=False).model_copy(
            update={"renamed_from": renamed.get(row.model_id), "day_models": 9}
        )
        assert row.model_dump(exclude={"occurred_at"}) == reference.model_dump(exclude={"occurred_at"})
    with pytest.raises(ValueError, match="one day's rows, not 2"):
        features.feature_batches(
            frame.assign(snapshot_date=pd.to_datetime(["2025-01-02", "2025-01-03"] * 3)), partitions=1
        )


def test_feature_batches_stay_within_the_byte_limit_whatever_the_rows_carry() -> None:
    """Rows with the longest tag lists the ingestor takes (MAX_TAGS tags, ~140 KB a row): 500 of them in one
    message would be refused by the broker (1 MiB), and the day's close would fail on it for good."""
    base = _feature_frame()
    frame = pd.concat([base] * 2, ignore_index=True)  # 12 rows
    frame["model_id"] = [f"org/wide{i:02d}" for i in range(len(frame))]
    frame["tags"] = [[f"{i:03d}" + "t" * 136 for i in range(1000)]] * len(frame)
    pairs = features.feature_batches(frame, day_models=len(frame), partitions=1)
    assert len(pairs) > 1
    assert all(len(value) <= FEATURES_BATCH_BYTES for _, value in pairs)
    messages = [ModelFeaturesPacked.model_validate_json(value) for _, value in pairs]
    assert [r.model_id for m in messages for r in m.as_v1()] == frame["model_id"].tolist()  # every row, in order
    assert [key for key, _ in pairs] == [m.key().encode() for m in messages]
    assert (
        len(features.feature_batches(base, day_models=len(base), partitions=1)) == 1
    )  # ordinary rows: one message as before


def _v2_rows(frame: pd.DataFrame, rows: int = 4) -> scorer.FeatureRows:
    """The frame as the scorer reads it: the close's hub.features.v3 messages, validated, as columns."""
    pairs = features.feature_batches(frame, day_models=len(frame), partitions=1, rows=rows)
    return scorer.feature_rows([ModelFeaturesPacked.model_validate_json(value) for _, value in pairs])


def test_score_payloads_validate_and_match_the_rows(challenger) -> None:
    frame = _feature_frame()
    events = [ModelFeatures.model_validate_json(v) for _, v in features.feature_payloads(frame, provisional=False)]
    scored = scorer.score(challenger, _v2_rows(frame), top_n=5)
    payloads = scorer.score_payloads(scored)
    catalog, daily = scorer.catalog_records(scored)
    assert len(payloads) == len(daily) == len(catalog) == len(events)
    x = scorer.values_matrix([e.features for e in events], challenger.feature_columns)
    explanation = scorer.CATALOG_COLUMNS.index("explanation")
    for i, ((key, value), event) in enumerate(zip(payloads, events, strict=True)):
        score = ModelScore.model_validate_json(value)
        assert key == event.model_id.encode()
        assert (score.model_id, score.snapshot_date, score.model_version) == (
            event.model_id,
            event.snapshot_date,
            challenger.metadata.version,
        )
        assert score.probability == daily[i][5] == float(scored.probability[i])
        assert len(score.top_features) == 5
        magnitudes = [abs(c.contribution) for c in score.top_features]
        assert magnitudes == sorted(magnitudes, reverse=True)
        for c in score.top_features:
            v = x[i, challenger.feature_columns.index(c.feature)]
            assert c.value == (None if np.isnan(v) else float(v))
        # the explanation stored in the catalog's build row is the event's top_features
        assert catalog[i][0] == event.model_id
        assert [c.model_dump() for c in score.top_features] == json.loads(catalog[i][explanation])


def _two_days_scored(challenger: Any, n: int = 40) -> scorer.Scored:
    """A batch of two days' scores (a day closed again after late rows comes with the next one), picks explained."""
    frame = _distinct_frame(n)
    later = frame.iloc[: n // 2].assign(snapshot_date=pd.Timestamp("2025-03-05"))
    messages = [
        ModelFeaturesPacked.model_validate_json(value)
        for day in (frame, later)
        for _, value in features.feature_batches(day, partitions=1, rows=7)
    ]
    scored = scorer.score(challenger, scorer.feature_rows(messages), 5, picks_only=True)
    explained = sum(e is not None for e in scored.explanations)
    assert 0 < explained < len(scored.explanations), "picks and non-picks both"
    return scored


def _as_v1(pairs: list[tuple[bytes, bytes]]) -> list[tuple[bytes, ModelScore]]:
    """Each v2 message's rows as v1 events, with the message's key."""
    return [(key, score) for key, value in pairs for score in ModelScoresBatch.model_validate_json(value).as_v1()]


def _without_time(score: ModelScore) -> dict[str, Any]:
    return score.model_dump(exclude={"occurred_at"})


@pytest.mark.parametrize("partitions", [1, 3])
def test_score_messages_carry_exactly_the_v1_events_each_model_on_its_partition(challenger, partitions) -> None:
    """hub.scores.v2 holds every score of v1, field for field; a message holds one day and one partition's models
    (the one v1's key, the model id, maps to, as does the message's key), in the batch's order within it."""
    scored = _two_days_scored(challenger)
    v1 = [ModelScore.model_validate_json(value) for _, value in scorer.score_payloads(scored)]
    pairs = scorer.score_messages(scored, partitions)
    rows = _as_v1(pairs)
    # the same scores: sorted by (day, model), since v2 groups them by day and partition
    ordered = sorted(v1, key=lambda s: (s.snapshot_date, s.model_id))
    assert sorted(map(_without_time, (s for _, s in rows)), key=lambda s: (s["snapshot_date"], s["model_id"])) == [
        _without_time(s) for s in ordered
    ]
    assert any(s.top_features for _, s in rows)
    assert any(not s.top_features for _, s in rows)
    where: dict[str, int] = {}
    for key, value in pairs:
        message = ModelScoresBatch.model_validate_json(value)
        assert key == message.key().encode()
        (slot,) = partition_slots([key], partitions).tolist()
        assert set(partition_slots([m.encode() for m in message.model_id], partitions).tolist()) == {slot}
        for m in message.model_id:
            assert where.setdefault(m, slot) == slot, "a model's scores on two partitions"
        batch_order = [i for i, s in enumerate(v1) if s.snapshot_date == message.snapshot_date]
        position = {v1[i].model_id: k for k, i in enumerate(batch_order)}
        assert [position[m] for m in message.model_id] == sorted(position[m] for m in message.model_id)
    # one message for each day and partition (each far under SCORES_BATCH_ROWS here)
    assert len(pairs) == len({(s.snapshot_date, where[s.model_id]) for s in v1})
    assert partitions == 1 or len(set(where.values())) == partitions
    assert scorer.score_messages(replace(scored, rows=scored.rows.take([])), partitions) == []


def test_score_messages_stay_within_the_byte_limit(challenger, monkeypatch) -> None:
    """Messages over SCORES_BATCH_BYTES are halved until each is within it, every score kept, in order."""
    scored = _two_days_scored(challenger)
    whole = scorer.score_messages(scored, 1)
    monkeypatch.setattr(scorer, "SCORES_BATCH_BYTES", 1500)
    pairs = scorer.score_messages(scored, 1)
    assert len(pairs) > 4 * len(whole)
    assert all(len(value) <= 1500 for _, value in pairs)
    assert [_without_time(s) for _, s in _as_v1(pairs)] == [_without_time(s) for _, s in _as_v1(whole)]
    monkeypatch.setattr(scorer, "SCORES_BATCH_BYTES", 100)
    with pytest.raises(ValueError, match="for that row alone, over 100"):
        scorer.score_messages(scored, 1)


def _distinct_frame(n: int) -> pd.DataFrame:
    """n model-days of one day, every row's values its own (a column read at another row's place shows)."""
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            "snapshot_date": pd.to_datetime(["2025-03-04"] * n),
            "model_id": [f"org{i % 3}/m{i}" for i in range(n)],
            "downloads": rng.permutation(n) * 100.0,
            "downloads_all_time": np.where(rng.random(n) < 0.2, np.nan, rng.permutation(n) * 1000.0 + 7),
            "likes": rng.permutation(n) + 1.0,
            "pipeline_tag": rng.choice(["text-generation", "fill-mask", None], n),
            "library_name": rng.choice(["transformers", "gguf", None], n),
            "author": [f"org{i % 3}" for i in range(n)],
            "tags": [[f"t{i}"] * (i % 3) for i in range(n)],
            "created_at": pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.permutation(n), unit="h"),
            "last_modified": pd.to_datetime("2024-06-01") + pd.to_timedelta(rng.permutation(n), unit="m"),
        }
    )
    values = (rng.normal(size=(n, len(FEATURE_COLUMNS))) * 3).astype("float32")
    values[rng.random(values.shape) < 0.1] = np.nan
    out = pd.concat([frame, pd.DataFrame(values, columns=list(FEATURE_COLUMNS))], axis=1)
    out["trending_rank"] = np.where(rng.random(n) < 0.5, np.nan, rng.permutation(n) + 1.0)
    return out


def _v1_catalog_row(e: ModelFeatures, p: float, explanation: str | None, scored: scorer.Scored) -> tuple[Any, ...]:
    """The catalog row the scorer built from a hub.features.v1 event (before v2), written out as it was."""
    likes_7d = e.features.get("likes_7d")
    return (
        *(e.model_id, e.author, e.pipeline_tag, e.library_name, list(e.tags), e.created_at, e.last_modified),
        *(e.snapshot_date, e.downloads or 0, e.downloads_all_time, e.likes or 0, e.trending_rank),
        *(e.features.get("growth_rate_7d"), p, scored.version, scored.label, scored.threshold),
        likes_7d if likes_7d is not None and np.isfinite(likes_7d) else None,
        explanation,
        json.loads(to_json(e.features, inf_nan_mode="null")),
    )


def _readable(row: tuple[Any, ...], scored: scorer.Scored) -> tuple[Any, ...]:
    """A catalog row with its feature set and vector read back as the features object."""
    *head, key, vector = row
    feature_set = scored.rows.feature_set
    assert key == feature_set.key
    return (*head, feature_vectors.decode(vector, feature_set.names))


def test_scores_from_v2_columns_equal_what_the_v1_events_gave(challenger) -> None:
    frame = _distinct_frame(60)
    v1 = [
        ModelFeatures.model_validate_json(value)
        for _, value in features.feature_payloads(frame, provisional=False, day_models=len(frame))
    ]
    # the v1 path: a matrix of each event's features by name, one XGBoost call, every row explained
    columns = challenger.feature_columns
    x = scorer.values_matrix([e.features for e in v1], columns)
    probability = challenger.predict_proba(pd.DataFrame(x.astype("float32"), columns=list(columns))).tolist()
    explanations = scorer.explain(challenger, x, 5)
    assert len(set(probability)) > len(v1) // 2, "rows score alike: a misaligned column would not show"

    # v3: messages of 7 rows, their features in the reverse of the model's order
    messages = []
    for _, value in features.feature_batches(frame, day_models=len(frame), partitions=1, rows=7):
        document = orjson.loads(value)
        document["features"] = dict(reversed(document["features"].items()))
        messages.append(ModelFeaturesPacked.model_validate(document))
    scored = scorer.score(challenger, scorer.feature_rows(messages), 5)
    assert scored.probability.tolist() == probability
    assert list(scored.explanations) == explanations
    catalog, daily = scorer.catalog_records(scored)
    expected = [_v1_catalog_row(*row, scored) for row in zip(v1, probability, explanations, strict=True)]
    # the vector follows the message's order of names (its feature set): the same features
    assert [_readable(r, scored) for r in catalog] == expected
    as_sent = scorer.score(challenger, _v2_rows(frame, 7), 5)  # as the close sends
    assert [_readable(r, as_sent) for r in scorer.catalog_records(as_sent)[0]] == expected
    assert daily == [
        (e.model_id, e.snapshot_date, e.downloads or 0, e.likes or 0, e.trending_rank, p, scored.version)
        for e, p in zip(v1, probability, strict=True)
    ]


def test_a_model_day_in_two_messages_of_a_batch_is_scored_once_as_the_later_one(challenger) -> None:
    frame = _distinct_frame(12)
    first = _v2_rows(frame)
    again = frame.copy()
    again.loc[3, "likes"] = 999.0  # the day closed again: model 3's later row differs
    rows = scorer.latest_per_model_day(
        scorer.feature_rows(
            [
                ModelFeaturesPacked.model_validate_json(v)
                for frame_ in (frame, again.iloc[2:5])
                for _, v in features.feature_batches(frame_, partitions=1, rows=4)
            ]
        )
    )
    assert rows.model_id == first.model_id  # each model-day once, where it first came
    assert rows.likes == [*first.likes[:3], 999, *first.likes[4:]]
    np.testing.assert_array_equal(rows.values, first.values)


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


def test_each_model_day_is_published_on_one_partition_however_the_day_is_sliced() -> None:
    """A day closed again after late rows is sliced anew: each message holds one partition's model-days (the one
    the default partitioner gives the model-day's key, and the message's key), so a model-day's publications stay
    on one partition, in order."""
    frame = pd.concat([_feature_frame()] * 40, ignore_index=True)
    frame["model_id"] = [f"org/p{i:03d}" for i in range(len(frame))]
    day = "2025-01-02"

    def partition_of(pairs: list[tuple[bytes, bytes]], partitions: int) -> dict[str, int]:
        where: dict[str, int] = {}
        for key, value in pairs:
            message = ModelFeaturesPacked.model_validate_json(value)
            (slot,) = partition_slots([key], partitions).tolist()
            row_slots = partition_slots(
                [ModelFeaturesPacked.key_of(day, m).encode() for m in message.model_id], partitions
            )
            assert set(row_slots.tolist()) == {slot}, "a message mixes partitions"
            where |= dict.fromkeys(message.model_id, slot)
        return where

    first = features.feature_batches(frame, day_models=len(frame), partitions=4, rows=7)
    where = partition_of(first, 4)
    assert sorted(where) == sorted(frame["model_id"])
    assert len(set(where.values())) == 4
    # within a partition, the day's order
    order = {m: i for i, m in enumerate(frame["model_id"])}
    for _, value in first:
        ids = ModelFeaturesPacked.model_validate_json(value).model_id
        assert [order[m] for m in ids] == sorted(order[m] for m in ids)
    # the day again, in other slices: same partitions
    again = features.feature_batches(frame.iloc[5:].sample(frac=1, random_state=3), partitions=4, rows=11)
    assert partition_of(again, 4) == {m: where[m] for m in frame["model_id"][5:]}
