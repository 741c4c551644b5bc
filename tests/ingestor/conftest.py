"""Ingestor tests: a replay Hub on a free port, the real broker and a fresh PostgreSQL database per test."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Generic, Protocol, TypeVar

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from support.polling import wait_for
from support.replay import Replay, replay, replay_server_fixture

from hubpulse_common.events import DayIngested, Event, ModelSnapshot, ModelSnapshotBatch
from hubpulse_common.kafka import EventBus, ensure_topics, partition_slots
from hubpulse_common.settings import load_settings
from hubpulse_ingestor.settings import IngestorSettings
from hubpulse_ingestor.standalone import open_stores

__all__ = ["Replay", "replay"]

N_MODELS, DAYS, PAGE = 3000, 3, 100


class Store(Protocol):
    url: str


replay_server = replay_server_fixture(N_MODELS, DAYS, seed=11, page_size=PAGE)


def ingestor_env(replay: Replay, database_url: str, kafka: Store) -> dict[str, str]:
    """Fast retries and small batches, so a test walks many pages and checkpoints often."""
    return {
        "HF_ENDPOINT": replay.url,
        "HUBPULSE_DATABASE_URL": database_url,
        "HUBPULSE_KAFKA_BOOTSTRAP": kafka.url,
        "HUBPULSE_BATCH_MODELS": "500",
        "HUBPULSE_HTTP_BASE_WAIT_S": "0.01",
        "HUBPULSE_PAGE_RETRY_WAIT_S": "0.01",
        "HUBPULSE_PAGE_ATTEMPTS": "2",
        "HUBPULSE_LOG_FORMAT": "console",
    }


@pytest.fixture
def settings(replay: Replay, database_url: str, kafka: Store, monkeypatch: pytest.MonkeyPatch) -> IngestorSettings:
    for key, value in ingestor_env(replay, database_url, kafka).items():
        monkeypatch.setenv(key, value)
    return load_settings(IngestorSettings)


@pytest.fixture
async def stores(settings: IngestorSettings) -> AsyncIterator[tuple[asyncpg.Pool, EventBus]]:
    async with open_stores(settings) as opened:
        yield opened


@pytest.fixture
def hf_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """huggingface_hub's backoff sleeps (Retry-After + 1 s); record them instead of spending them."""
    import time

    import huggingface_hub.utils._http as hf_http

    waits: list[float] = []
    monkeypatch.setattr(hf_http, "time", type("Clock", (), {"sleep": staticmethod(waits.append), "time": time.time}))
    return waits


E = TypeVar("E", bound=Event)


class EventTap(Generic[E]):
    """Reads the events of one topic published after it was marked (the broker is shared by the session)."""

    def __init__(self, bootstrap: str, event_type: type[E]) -> None:
        self._bootstrap = bootstrap
        self._event_type = event_type
        self._start: dict[TopicPartition, int] = {}

    async def _consumer(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, enable_auto_commit=False)
        await consumer.start()
        return consumer

    async def mark(self) -> None:
        # the broker's end offsets can trail just-acknowledged writes, so also drop events older than the mark
        self._since = dt.datetime.now(dt.UTC)
        await ensure_topics(self._bootstrap)
        consumer = await self._consumer()
        try:
            topic = self._event_type.topic

            async def partitions() -> list[TopicPartition]:
                await consumer.topics()  # a metadata refresh: a topic just created may not be in the first one
                return [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]

            # with no partitions marked, every read would find nothing however much was published
            parts = await wait_for(partitions, bool, timeout_s=15, what=f"{topic}'s partitions in the metadata")
            self._start = await consumer.end_offsets(parts)
        finally:
            await consumer.stop()

    async def read_records(self) -> list[tuple[bytes, int, E]]:
        """(key, partition, event) of each message since the mark, in order per partition."""
        consumer = await self._consumer()
        try:
            parts = list(self._start)
            consumer.assign(parts)
            ends = await consumer.end_offsets(parts)
            for tp in parts:
                consumer.seek(tp, self._start[tp])
            out: list[tuple[bytes, int, E]] = []
            total = sum(ends[tp] - self._start[tp] for tp in parts)
            # up to the end offsets, and on until a poll finds nothing: the end offsets can trail what is there
            while (
                batches := await consumer.getmany(timeout_ms=1000 if len(out) < total else 500, max_records=10_000)
            ) or len(out) < total:
                for tp, records in batches.items():
                    out.extend(
                        (r.key or b"", tp.partition, self._event_type.model_validate_json(r.value or b""))
                        for r in records
                    )
            return [(key, partition, event) for key, partition, event in out if event.occurred_at >= self._since]
        finally:
            await consumer.stop()

    async def read(self) -> list[tuple[bytes, E]]:
        return [(key, event) for key, _, event in await self.read_records()]


class SnapshotTap(EventTap[ModelSnapshotBatch]):
    """The hub.snapshots.v2 messages published since the mark, read back as the rows they carry."""

    async def rows(self) -> list[tuple[bytes, ModelSnapshot]]:
        """(model id, v1 event) of each row, in order per partition. Checks each message's key and partition: the
        key is its first row's model id, and every row's model id maps to the message's partition (so one model's
        snapshots stay on one partition, in order)."""
        out: list[tuple[bytes, ModelSnapshot]] = []
        for key, partition, message in await self.read_records():
            ids = [m.encode() for m in message.model_id]
            assert key == ids[0]
            assert set(partition_slots(ids, len(self._start)).tolist()) == {partition}, "a row off its partition"
            out.extend((m.model_id.encode(), m) for m in message.as_v1())
        return out


@pytest.fixture
async def tap(kafka: Store) -> SnapshotTap:
    tap = SnapshotTap(kafka.url, ModelSnapshotBatch)
    await tap.mark()
    return tap


@pytest.fixture
async def signals(kafka: Store) -> EventTap[DayIngested]:
    """The day-complete signals published during the test."""
    tap = EventTap(kafka.url, DayIngested)
    await tap.mark()
    return tap
