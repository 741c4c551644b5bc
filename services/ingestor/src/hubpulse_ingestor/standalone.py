"""The ingestor's stores outside its service process (the `hubpulse ingest` and `hubpulse import` commands)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import asyncpg

from hubpulse_common import db
from hubpulse_common.kafka import EventBus, ensure_topics
from hubpulse_ingestor.app import MIGRATIONS
from hubpulse_ingestor.settings import IngestorSettings


@asynccontextmanager
async def open_stores(settings: IngestorSettings) -> AsyncIterator[tuple[asyncpg.Pool, EventBus]]:
    """Migrated PostgreSQL pool and a started event bus, as the service's lifespan opens them."""
    url = settings.database_url.get_secret_value()
    async with AsyncExitStack() as stack:
        await db.migrate(url, MIGRATIONS, version_table=f"alembic_version_{settings.service_name}")
        pool = await db.create_pool(url, max_size=4)
        stack.push_async_callback(pool.close)
        await ensure_topics(settings.kafka_bootstrap, partitions=settings.kafka_partitions)
        bus = EventBus(settings.kafka_bootstrap, client_id=f"{settings.service_name}-cli")
        await bus.start()
        stack.push_async_callback(bus.stop)
        yield pool, bus
