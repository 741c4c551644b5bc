"""Helpers shared by the features and scorer tests: synthetic snapshots, services run in-process, polling."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
import numpy as np
import pandas as pd
from fastapi import FastAPI
from support.topics import topic_values

from hubpulse_common.db import create_pool, migrate
from hubpulse_common.events import (
    SNAPSHOTS_BATCH_ROWS,
    Event,
    ModelFeatures,
    ModelFeaturesPacked,
    ModelSnapshot,
    ModelSnapshotBatch,
)
from hubpulse_common.features import FEATURE_COLUMNS, compute_features
from hubpulse_common.kafka import EventBus, Received, partition_slots
from hubpulse_common.settings import ServiceSettings, load_settings
from hubpulse_common.synthetic import SyntheticHub
from hubpulse_features import repository
from hubpulse_features.app import MIGRATIONS
from hubpulse_features.handlers import FeaturesWorker
from hubpulse_features.service import HISTORY_COLUMNS, WINDOW_COLUMNS, records_frame

S = TypeVar("S", bound=ServiceSettings)


def hub_snapshots(hub: SyntheticHub, day: int, prefix: str) -> list[ModelSnapshot]:
    """Day `day` of a synthetic Hub as snapshot events; ids get a per-test prefix (the broker is shared)."""
    c = hub.day_columns(day)
    out = []
    for i in range(len(c)):
        rank = int(c.trending_rank[i])
        out.append(
            ModelSnapshot(
                model_id=f"{prefix}{c.model_id[i]}",
                snapshot_date=c.date,
                downloads=int(c.downloads[i]),
                downloads_all_time=int(c.downloads_all_time[i]),
                likes=int(c.likes[i]),
                trending_rank=rank if rank > 0 else None,
                pipeline_tag=c.pipeline_vocab[c.pipeline_code[i]] if c.pipeline_code[i] >= 0 else None,
                library_name=c.library_vocab[c.library_code[i]] if c.library_code[i] >= 0 else None,
                tags=list(c.tags_vocab[c.tags_code[i]]),
                created_at=dt.datetime.fromtimestamp(float(c.created_ts[i]), dt.UTC),
                source="bench",
            )
        )
    return out


def settings_for(cls: type[S], service_env: dict[str, str], database_url: str, **overrides: Any) -> S:
    """Service settings on the test stores, with a consumer group of their own."""
    return load_settings(
        cls,
        database_url=database_url,
        kafka_bootstrap=service_env["HUBPULSE_KAFKA_BOOTSTRAP"],
        s3_endpoint=service_env["HUBPULSE_S3_ENDPOINT"],
        consumer_group=f"g-{uuid.uuid4().hex[:10]}",
        **overrides,
    )


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[FastAPI]:
    """The service's real lifespan (stores, consumers, background tasks), in this event loop."""
    async with app.router.lifespan_context(app):
        yield app


@asynccontextmanager
async def streamed_day(
    database_url: str, bus: EventBus, *, seed: int, tag: str, models: int = 300
) -> AsyncIterator[tuple[FeaturesWorker, list[ModelSnapshot]]]:
    """A features worker over the migrated database and `bus` (started here), with one synthetic day of `models`
    models streamed as one batch (ids prefixed `tag` and a random part: the broker and the day are shared)."""
    await migrate(database_url, MIGRATIONS, version_table="alembic_version_features")
    await bus.start()
    pool = await create_pool(database_url)
    try:
        await repository.ensure_feature_set(pool)
        worker = FeaturesWorker(pool, bus)
        events = hub_snapshots(SyntheticHub(models, 1, seed=seed), 0, f"{tag}{uuid.uuid4().hex[:6]}-")
        await worker.handle(received(events))
        yield worker, events
    finally:
        await pool.close()
        await bus.stop()


def received(events: Sequence[ModelSnapshot]) -> list[Received[ModelSnapshotBatch]]:
    """Snapshot events as one consumed batch of hub.snapshots.v2 messages (a model-day again starts a message)."""
    return [Received(m, ModelSnapshotBatch.topic, 0, i, None) for i, m in enumerate(ModelSnapshotBatch.of_many(events))]


async def snapshot_messages(
    bus: EventBus, events: Sequence[ModelSnapshot], rows: int = SNAPSHOTS_BATCH_ROWS
) -> list[ModelSnapshotBatch]:
    """Snapshot events as the ingestor publishes them on hub.snapshots.v2: one partition's models a message (the
    partition v1 put each model on), up to `rows` a message, in order."""
    slots = partition_slots([e.model_id.encode() for e in events], await bus.partition_count(ModelSnapshotBatch.topic))
    by_slot: dict[int, list[ModelSnapshot]] = {}
    for event, slot in zip(events, slots.tolist(), strict=True):
        by_slot.setdefault(slot, []).append(event)
    return [m for group in by_slot.values() for m in ModelSnapshotBatch.of_many(group, rows)]


async def publish(bootstrap: str, events: Sequence[Event], *, rows: int = SNAPSHOTS_BATCH_ROWS) -> None:
    """Publish events; snapshot events go out as the ingestor sends them (`snapshot_messages`, up to `rows` a
    message), before the others."""
    bus = EventBus(bootstrap, "test-producer")
    await bus.start()
    try:
        snapshots = [e for e in events if isinstance(e, ModelSnapshot)]
        others = [e for e in events if not isinstance(e, ModelSnapshot)]
        await bus.publish_many([*await snapshot_messages(bus, snapshots, rows), *others])
    finally:
        await bus.stop()


async def fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def stored_features_truth(url: str) -> pd.DataFrame:
    """compute_features over every snapshot the features service stored in this database.

    The broker is shared by the session's tests and a new consumer group reads a topic from its start, so
    a service under test also takes in earlier tests' snapshots: its day-wide ranks are over that whole
    population, and the truth must be too (what the exactness contract promises: streaming == batch over
    the same history).
    """
    conn = await asyncpg.connect(url)
    try:
        records = [tuple(r) for r in await conn.fetch(f"SELECT {', '.join(HISTORY_COLUMNS)} FROM feature_history")]  # noqa: S608
    finally:
        await conn.close()
    history = records_frame(records)
    return compute_features(history[list(WINDOW_COLUMNS)])


async def open_days(url: str) -> int:
    return int((await fetch(url, "SELECT count(*) AS n FROM feature_days WHERE closed_at IS NULL"))[0]["n"])


def features_frame(events: Iterable[ModelFeatures]) -> pd.DataFrame:
    """snapshot_date (a Timestamp), model_id and FEATURE_COLUMNS (float32, NaN where missing) of feature events,
    the latest publication of a model-day winning (a republished day upserts). By `occurred_at`: the topic is read
    a partition at a time, and only within a partition is the order read the order published."""
    latest = {(e.snapshot_date, e.model_id): e for e in sorted(events, key=lambda e: e.occurred_at)}
    values = np.asarray(
        [[np.nan if (v := e.features.get(c)) is None else v for c in FEATURE_COLUMNS] for e in latest.values()],
        dtype="float32",
    ).reshape(len(latest), len(FEATURE_COLUMNS))
    frame = pd.DataFrame(values, columns=list(FEATURE_COLUMNS))
    frame.insert(0, "model_id", [model_id for _, model_id in latest])
    frame.insert(0, "snapshot_date", pd.to_datetime([day for day, _ in latest]))
    return frame


async def published_messages(bootstrap: str) -> list[ModelFeaturesPacked]:
    """hub.features.v3's messages, read from the topic's start to its end now."""
    values = await topic_values(bootstrap, ModelFeaturesPacked.topic)
    return [ModelFeaturesPacked.model_validate_json(value) for value in values]


async def published_features(bootstrap: str, prefix: str) -> pd.DataFrame:
    """What hub.features.v3 holds for the models of this prefix (`features_frame`)."""
    messages = await published_messages(bootstrap)
    return features_frame(e for m in messages for e in m.as_v1() if e.model_id.startswith(prefix))
