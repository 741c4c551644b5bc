"""What the services published: a topic read from its start to its end now, or a bus that keeps what it sends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer

from hubpulse_common.db import create_pool, migrate
from hubpulse_common.events import ModelScore, ModelScoresBatch
from hubpulse_common.kafka import EventBus


async def topic_values(bootstrap: str, topic: str) -> list[bytes]:
    """Every message value of `topic`, read from its start to its end now (partition by partition: the order across
    partitions is not the order published)."""
    return [value for _, value in await topic_records(bootstrap, topic)]


async def topic_records(bootstrap: str, topic: str) -> list[tuple[int, bytes]]:
    """(partition, value) of every message of `topic`, from its start to its end now; each partition's in order."""
    reader = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,  # and no group: a group's join waits half a session on the embedded broker
    )
    await reader.start()
    try:
        while not (partitions := reader.assignment()):
            await reader.getmany(timeout_ms=100)
        await reader.seek_to_beginning(*partitions)
        ends = await reader.end_offsets(list(partitions))
        out: list[tuple[int, bytes]] = []
        while [p for p, end in ends.items() if await reader.position(p) < end]:
            for partition, records in (await reader.getmany(timeout_ms=500)).items():
                out += [(partition.partition, record.value or b"") for record in records]
    finally:
        await reader.stop()
    return out


async def published_scores(bootstrap: str, prefix: str) -> list[ModelScore]:
    """hub.scores.v2's scores of the models of this prefix, one v1 event each: what the scorer's batches computed."""
    messages = [ModelScoresBatch.model_validate_json(v) for v in await topic_values(bootstrap, ModelScoresBatch.topic)]
    return [score for message in messages for score in message.as_v1() if score.model_id.startswith(prefix)]


class ByTopic(EventBus):
    """The real bus, keeping the values it publishes by topic."""

    published: dict[str, list[bytes]]

    async def publish_encoded(
        self, topic: str, items: Iterable[tuple[bytes, bytes]], *, trace_id: str | None = None
    ) -> int:
        pairs = list(items)
        self.published.setdefault(topic, []).extend(value for _, value in pairs)
        return await super().publish_encoded(topic, pairs, trace_id=trace_id)


@asynccontextmanager
async def worker_io(
    bootstrap: str, database_url: str, migrations: Path, version_table: str, client_id: str
) -> AsyncIterator[tuple[asyncpg.Pool, ByTopic]]:
    """A service's database migrated, a pool on it and a started `ByTopic` bus: what a worker under test needs."""
    await migrate(database_url, migrations, version_table=version_table)
    bus = ByTopic(bootstrap, client_id=client_id)
    bus.published = {}
    await bus.start()
    pool = await create_pool(database_url)
    try:
        yield pool, bus
    finally:
        await pool.close()
        await bus.stop()
