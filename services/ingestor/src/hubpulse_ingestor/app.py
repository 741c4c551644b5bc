"""The ingestor service's FastAPI app; its lifespan owns the stores and background work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from hubpulse_common.http import create_service_app
from hubpulse_common.resources import open_resources

from hubpulse_ingestor.settings import IngestorSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: IngestorSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(app, settings, postgres=MIGRATIONS, kafka=True):
            yield

    return create_service_app(
        service=settings.service_name,
        title="hubpulse ingestor",
        description="Walks the Hugging Face Hub each cycle and emits daily model snapshots.",
        lifespan=lifespan,
    )
