"""The features service's FastAPI app; its lifespan owns the stores, the consumers (snapshots, the ingestor's
day-complete signals) and the day closer."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from hubpulse_common.events import DayIngested, ModelSnapshotBatch
from hubpulse_common.http import service_app
from hubpulse_common.kafka import BatchConsumer, start_consumers, stop_consumers
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
            worker = FeaturesWorker(
                pool, bus, publish_v1=settings.features_publish_v1, publish_v2=settings.features_publish_v2
            )
            signals = BatchConsumer.of(settings, bus, DayIngested, worker.handle_ingested, poll_timeout_ms=200)
            consumers: list[BatchConsumer[Any]] = [
                BatchConsumer.of(settings, bus, ModelSnapshotBatch, worker.handle),
                signals,
            ]
            for consumer in consumers:
                report(app, consumer.loop)
            await start_consumers(consumers)
            closer = supervise(
                app,
                "features:closer",
                lambda: worker.run_closer(settings.day_close_idle_s, settings.day_close_check_s, signals.caught_up),
            )
            app.state.worker = worker
            async with background(closer, then=[functools.partial(stop_consumers, consumers)]):
                yield

    return service_app(
        settings,
        title="hubpulse features",
        description="Turns daily snapshots into velocity features.",
        lifespan=lifespan,
    )
