"""Ingestor tests: a replay Hub on a free port, the real broker and a fresh PostgreSQL database per test."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Protocol

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from hubpulse.hub import RunningHub, create_app, start_in_thread
from hubpulse_common.events import ModelSnapshot
from hubpulse_common.kafka import EventBus, ensure_topics
from hubpulse_common.settings import load_settings
from hubpulse_common.synthetic import SyntheticHub
from hubpulse_ingestor.settings import IngestorSettings
from hubpulse_ingestor.standalone import open_stores

N_MODELS, DAYS, PAGE = 3000, 3, 100


class Store(Protocol):
    url: str


@dataclass
class Replay:
    hub: SyntheticHub
    run: RunningHub

    @property
    def url(self) -> str:
        return self.run.url

    def post(self, path: str, body: dict[str, object] | None = None) -> None:
        httpx.post(self.url + path, json=body or {}, timeout=30).raise_for_status()

    def day(self, d: int = 0) -> dt.date:
        return self.hub.dates[d]

    def models(self, d: int = 0) -> int:
        """Models on the Hub that day (new ones keep appearing, so fewer than N_MODELS early on)."""
        return len(self.hub.day(d))


@pytest.fixture(scope="session")
def replay_server() -> Iterator[Replay]:
    hub = SyntheticHub(N_MODELS, DAYS, seed=11)
    run = start_in_thread(create_app(hub, page_size=PAGE))
    yield Replay(hub=hub, run=run)
    run.stop()


@pytest.fixture
def replay(replay_server: Replay) -> Iterator[Replay]:
    yield replay_server
    replay_server.post("/_replay/faults", {})
    replay_server.post("/_replay/live", {})
    replay_server.post("/_replay/reset", {})


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


class SnapshotTap:
    """Reads the hub.snapshots.v1 events published after it was created (the broker is shared by the session)."""

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
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
            parts = [
                TopicPartition(ModelSnapshot.topic, p) for p in consumer.partitions_for_topic(ModelSnapshot.topic) or ()
            ]
            if not parts:
                await consumer.topics()
                parts = [
                    TopicPartition(ModelSnapshot.topic, p)
                    for p in consumer.partitions_for_topic(ModelSnapshot.topic) or ()
                ]
            self._start = await consumer.end_offsets(parts)
        finally:
            await consumer.stop()

    async def read(self) -> list[tuple[bytes, ModelSnapshot]]:
        consumer = await self._consumer()
        try:
            parts = list(self._start)
            consumer.assign(parts)
            ends = await consumer.end_offsets(parts)
            for tp in parts:
                consumer.seek(tp, self._start[tp])
            out: list[tuple[bytes, ModelSnapshot]] = []
            total = sum(ends[tp] - self._start[tp] for tp in parts)
            while len(out) < total:
                batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                for records in batches.values():
                    out.extend((r.key or b"", ModelSnapshot.model_validate_json(r.value or b"")) for r in records)
            return [(key, event) for key, event in out if event.occurred_at >= self._since]
        finally:
            await consumer.stop()


@pytest.fixture
async def tap(kafka: Store) -> SnapshotTap:
    tap = SnapshotTap(kafka.url)
    await tap.mark()
    return tap


async def wait_for(predicate: object, timeout_s: float = 30.0, every_s: float = 0.1) -> None:
    import inspect

    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        result = predicate() if callable(predicate) else predicate
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        await asyncio.sleep(every_s)
    raise AssertionError(f"condition not met within {timeout_s} s")
