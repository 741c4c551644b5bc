"""The features service's FastAPI app; its lifespan owns the stores, the snapshot consumer and the day closer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from hubpulse_common.events import ModelSnapshot
from hubpulse_common.http import service_app
from hubpulse_common.kafka import BatchConsumer
from hubpulse_common.resources import background, open_resources
from hubpulse_common.supervise import report, supervise
from hubpulse_features import repository
from hubpulse_features.handlers import FeaturesWorker
from hubpulse_features.settings import FeaturesSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: FeaturesSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(app, settings, postgres=MIGRATIONS, kafka=True) as res:
            pool, bus = res.require_pool(), res.require_bus()
            await repository.ensure_feature_set(pool)
            worker = FeaturesWorker(pool, bus, publish_v1=settings.features_publish_v1)
            consumer = BatchConsumer.of(settings, bus, ModelSnapshot, worker.handle)
            report(app, consumer.loop)
            await consumer.start()
            closer = supervise(
                app, "features:closer", lambda: worker.run_closer(settings.day_close_idle_s, settings.day_close_check_s)
            )
            app.state.worker = worker
            async with background(closer, then=[consumer.stop]):
                yield

    return service_app(
        settings,
        title="hubpulse features",
        description="Turns daily snapshots into velocity features.",
        lifespan=lifespan,
    )
