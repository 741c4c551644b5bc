"""Open what a service needs (PostgreSQL, Kafka, MongoDB, S3) in its lifespan, with readiness probes.

    async with open_resources(app, settings, postgres=MIGRATIONS, kafka=True) as res:
        ...  # res.pool, res.bus

Everything opened here is closed in reverse order on the way out, also when start-up fails halfway.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from fastapi import FastAPI
from pymongo import AsyncMongoClient
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_fixed

from hubpulse_common import db
from hubpulse_common.http import add_readiness_probe
from hubpulse_common.kafka import EventBus, ensure_topics
from hubpulse_common.mongo import connect_mongo
from hubpulse_common.s3 import aws_client, ensure_bucket
from hubpulse_common.settings import CommonSettings
from hubpulse_common.supervise import Supervised


@dataclass
class Resources:
    pool: asyncpg.Pool | None = None
    bus: EventBus | None = None
    mongo: AsyncMongoClient[dict[str, Any]] | None = None
    s3: Any = None

    def require_pool(self) -> asyncpg.Pool:
        assert self.pool is not None, "this service did not open PostgreSQL"
        return self.pool

    def require_bus(self) -> EventBus:
        assert self.bus is not None, "this service did not open Kafka"
        return self.bus

    def require_mongo(self) -> AsyncMongoClient[dict[str, Any]]:
        assert self.mongo is not None, "this service did not open MongoDB"
        return self.mongo


async def migrate_or_check(settings: CommonSettings, versions_dir: Path, *, migrate: bool | None = None) -> None:
    """Bring the service's schema up to date (`migrate`, default HUBPULSE_MIGRATE_ON_START) or only check it."""
    url = settings.database_url.get_secret_value()
    version_table = f"alembic_version_{settings.service_name}"
    if settings.migrate_on_start if migrate is None else migrate:
        await db.migrate(
            url,
            versions_dir,
            version_table,
            lock_timeout_s=settings.migration_lock_timeout_s,
            statement_timeout_s=settings.migration_statement_timeout_s,
        )
        return
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(db.SchemaBehindError),
        stop=stop_after_delay(settings.schema_wait_s),
        wait=wait_fixed(min(2.0, settings.schema_wait_s)),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            await db.check_schema(url, versions_dir, version_table, service=settings.service_name)


@asynccontextmanager
async def open_resources(
    app: FastAPI,
    settings: CommonSettings,
    *,
    postgres: Path | bool = False,
    kafka: bool = False,
    mongo: bool = False,
    s3: bool = False,
    pool_size: int = 10,
) -> AsyncIterator[Resources]:
    """`postgres`: the service's Alembic versions folder (migrated, then pooled), or True for a pool only."""
    res = Resources()
    async with AsyncExitStack() as stack:
        if postgres:
            url = settings.database_url.get_secret_value()
            if isinstance(postgres, Path):
                await migrate_or_check(settings, postgres)
            res.pool = await db.create_pool(url, max_size=pool_size, application_name=settings.service_name)
            stack.push_async_callback(res.pool.close)
            pool = res.pool
            add_readiness_probe(app, "postgres", lambda: db.ping(pool))
        if kafka:
            if settings.kafka_create_topics:
                await ensure_topics(settings.kafka_bootstrap, partitions=settings.kafka_partitions)
            res.bus = EventBus(settings.kafka_bootstrap, client_id=settings.service_name)
            await res.bus.start()
            stack.push_async_callback(res.bus.stop)
            add_readiness_probe(app, "kafka", res.bus.ping)
        if mongo:
            res.mongo = await connect_mongo(settings.mongo_url.get_secret_value())
            stack.push_async_callback(res.mongo.close)
            client = res.mongo
            add_readiness_probe(app, "mongo", lambda: client.admin.command("ping"))
        if s3:
            res.s3 = aws_client("s3", settings)
            await asyncio.to_thread(ensure_bucket, res.s3, settings.s3_bucket)
            s3_client = res.s3
            add_readiness_probe(app, "s3", lambda: asyncio.to_thread(s3_client.head_bucket, Bucket=settings.s3_bucket))
        app.state.resources = res
        yield res


@asynccontextmanager
async def background(*tasks: Supervised, then: Sequence[Callable[[], Awaitable[None]]] = ()) -> AsyncIterator[None]:
    """Keep supervised `tasks` running for the lifespan; on the way out stop them, then run `then` in order
    (e.g. a consumer's `stop`, which finishes the batch in hand and commits it)."""
    try:
        yield
    finally:
        for task in tasks:
            await task.stop()
        for stop in then:
            await stop()
