"""The ingestor service's FastAPI app; its lifespan owns the stores and the cycle scheduler."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from hubpulse_common.http import service_app
from hubpulse_common.resources import background, open_resources
from hubpulse_common.supervise import Supervised, supervise
from hubpulse_ingestor.routes import router
from hubpulse_ingestor.scheduler import run_scheduler
from hubpulse_ingestor.settings import IngestorSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: IngestorSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(app, settings, postgres=MIGRATIONS, kafka=True) as res:
            app.state.wake = asyncio.Event()
            tasks: list[Supervised] = []
            if settings.ingest_enabled:
                pool, bus, wake = res.require_pool(), res.require_bus(), app.state.wake
                tasks.append(supervise(app, "ingest-scheduler", lambda: run_scheduler(pool, bus, settings, wake)))
            async with background(*tasks):
                yield

    return service_app(
        settings,
        title="hubpulse ingestor",
        description="Walks the Hugging Face Hub each cycle and emits daily model snapshots.",
        lifespan=lifespan,
        routers=[router],
    )
