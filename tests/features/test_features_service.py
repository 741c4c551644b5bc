"""The features service against the real broker and PostgreSQL: idempotence, gaps, resets, day closing, DLQ."""

from __future__ import annotations

import uuid

import numpy as np
import orjson
import pandas as pd
from aiokafka import AIOKafkaConsumer
from support.polling import wait_for

from features.support import (
    fetch,
    hub_snapshots,
    open_days,
    publish,
    published_features,
    running,
    settings_for,
    stored_features_truth,
)
from hubpulse_common.events import ModelSnapshot, ModelSnapshotBatch, dlq_topic
from hubpulse_common.features import CROSS_FEATURE_COLUMNS, FEATURE_COLUMNS
from hubpulse_common.kafka import EventBus
from hubpulse_common.synthetic import SyntheticHub
from hubpulse_features.app import create_app
from hubpulse_features.service import TIME_FEATURE_COLUMNS
from hubpulse_features.settings import FeaturesSettings

DAYS = 5


def _with_gaps_and_reset(events: list[ModelSnapshot], day: int, reset_id: str) -> list[ModelSnapshot]:
    """Every 5th model misses day 2 (a gap); one model's likes counter resets on day 3 (repo re-created)."""
    out = [e for i, e in enumerate(events) if not (day == 2 and i % 5 == 0)]
    if day >= 3:
        out = [e.model_copy(update={"likes": 0}) if e.model_id == reset_id else e for e in out]
    return out


async def test_streamed_features_equal_batch_features_once_per_model_day(service_env, database_url, own_kafka) -> None:
    prefix = f"f{uuid.uuid4().hex[:6]}-"
    hub = SyntheticHub(400, DAYS, seed=3)
    reset_id = max(hub_snapshots(hub, 2, prefix), key=lambda e: e.likes).model_id
    days = [_with_gaps_and_reset(hub_snapshots(hub, d, prefix), d, reset_id) for d in range(DAYS)]
    # a broker of its own: on the session's, the service's new consumer group would first stream (and close) every
    # earlier test's snapshots
    env = {**service_env, "HUBPULSE_KAFKA_BOOTSTRAP": own_kafka.url}
    settings = settings_for(FeaturesSettings, env, database_url, day_close_idle_s=2.0, day_close_check_s=0.5)
    async with running(create_app(settings)):
        for day in days:
            # every day is delivered twice (a producer retry, a redelivered batch): one row per model-day
            await publish(settings.kafka_bootstrap, [*day, *day[: len(day) // 2]])
        expected = sum(len(d) for d in days)
        await wait_for(
            lambda: fetch(
                database_url,
                "SELECT count(*) AS n, count(*) FILTER (WHERE NOT provisional) AS final FROM feature_rows "
                "WHERE model_id LIKE $1",
                prefix + "%",
            ),
            lambda rows: rows[0]["final"] == expected,
        )
        await wait_for(lambda: open_days(database_url), lambda n: n == 0)
        rows = await fetch(
            database_url,
            "SELECT snapshot_date, model_id, values FROM feature_rows WHERE model_id LIKE $1",
            prefix + "%",
        )
        published = await published_features(settings.kafka_bootstrap, prefix)
    assert len(rows) == expected  # no duplicate model-day
    assert len(published) == expected

    # Streaming (batch by batch, then day closing) gives exactly what the batch computation gives: in the events,
    # every feature; in the store, the time features its batches wrote (the day-wide ranks are the close's).
    truth = await stored_features_truth(database_url)
    stored = pd.DataFrame(np.asarray([r["values"] for r in rows], dtype="float32"), columns=list(FEATURE_COLUMNS))
    stored["snapshot_date"] = pd.to_datetime([r["snapshot_date"] for r in rows])
    stored["model_id"] = [r["model_id"] for r in rows]
    assert stored[list(CROSS_FEATURE_COLUMNS)].isna().all().all()
    for got, columns in ((published, FEATURE_COLUMNS), (stored, TIME_FEATURE_COLUMNS)):
        merged = truth.merge(got, on=["snapshot_date", "model_id"], suffixes=("", "_stream"), validate="one_to_one")
        assert len(merged) == expected
        for column in columns:
            np.testing.assert_allclose(
                merged[f"{column}_stream"], merged[column], rtol=1e-6, equal_nan=True, err_msg=column
            )
    # the gap and the reset are visible as such, not papered over
    gap = merged[merged["model_id"].isin({e.model_id for i, e in enumerate(days[1]) if i % 5 == 0})]
    on_day_3 = gap[gap["snapshot_date"] == pd.Timestamp(days[3][0].snapshot_date)]
    assert (on_day_3["days_since_prev_obs"] == 2).all()
    day_3 = pd.Timestamp(days[3][0].snapshot_date)
    reset = merged[(merged["model_id"] == reset_id) & (merged["snapshot_date"] == day_3)]
    assert len(reset) == 1
    assert reset["likes_1d"].isna().all()


async def test_poison_goes_to_dlq_and_the_stream_goes_on(service_env, database_url, own_kafka) -> None:
    """Poison on hub.snapshots.v2 is a message that does not validate as a whole (here: a column one value short;
    and one row's count negative): its rows cannot be trusted one by one (a short column misaligns every row after
    the gap), so the message goes whole, byte for byte, to the DLQ (replayable once fixed), while the good
    messages of the same poll and partition are stored, every row."""
    prefix = f"p{uuid.uuid4().hex[:6]}-"
    # a broker of its own: on the session's, the service first streams every snapshot earlier tests published
    env = {**service_env, "HUBPULSE_KAFKA_BOOTSTRAP": own_kafka.url}
    settings = settings_for(FeaturesSettings, env, database_url, day_close_idle_s=600.0)
    day = pd.Timestamp("2026-02-01").date()
    good = [ModelSnapshot(model_id=f"{prefix}org/ok{i}", snapshot_date=day, downloads=5, likes=i) for i in range(3)]
    message = ModelSnapshotBatch.of([e.model_copy(update={"model_id": f"{prefix}bad{i}"}) for i, e in enumerate(good)])
    short = orjson.loads(message.model_dump_json())
    short["likes"] = short["likes"][:-1]
    negative = orjson.loads(message.model_dump_json())
    negative["downloads"][1] = -1
    poison = [orjson.dumps(short), orjson.dumps(negative), b"not json"]
    async with running(create_app(settings)):
        bus = EventBus(settings.kafka_bootstrap, "test-poison")
        await bus.start()
        try:
            # on the good message's partition, ahead of it (its key is its first model's id)
            key = good[0].model_id.encode()
            for value in poison:
                await bus.publish_raw(ModelSnapshotBatch.topic, value, key=key, headers=[])
            await bus.publish(ModelSnapshotBatch.of(good))
        finally:
            await bus.stop()
        await wait_for(
            lambda: fetch(database_url, "SELECT model_id FROM feature_rows WHERE model_id LIKE $1", f"{prefix}%"),
            lambda rows: len(rows) == len(good),
        )
    stored = await fetch(database_url, "SELECT model_id FROM feature_history WHERE model_id LIKE $1", f"{prefix}%")
    assert sorted(r["model_id"] for r in stored) == sorted(e.model_id for e in good)
    reader = AIOKafkaConsumer(
        dlq_topic(ModelSnapshotBatch.topic),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",  # no group: its join would wait half a session on the embedded broker
    )
    await reader.start()
    try:
        found: set[bytes] = set()
        for _ in range(40):
            batches = await reader.getmany(timeout_ms=250)
            found |= {r.value for records in batches.values() for r in records if r.value in poison}
            if len(found) == len(poison):
                break
    finally:
        await reader.stop()
    assert found == set(poison), "a poison message never reached the DLQ"
