"""The metrics service's FastAPI app; its lifespan owns the stores and background work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from hubpulse_common.http import create_service_app
from hubpulse_common.resources import open_resources

from hubpulse_metrics.settings import MetricsSettings


def create_app(settings: MetricsSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(app, settings, kafka=True, mongo=True):
            yield

    return create_service_app(
        service=settings.service_name,
        title="hubpulse metrics",
        description="Latency, error rate, usage analytics and live pushes.",
        lifespan=lifespan,
    )
