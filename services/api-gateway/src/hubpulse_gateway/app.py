"""The gateway service's FastAPI app; its lifespan owns the stores and background work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from hubpulse_common.http import create_service_app
from hubpulse_common.resources import open_resources

from hubpulse_gateway.settings import GatewaySettings


def create_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(app, settings, postgres=True, kafka=True):
            yield

    return create_service_app(
        service=settings.service_name,
        title="hubpulse gateway",
        description="The one public API of hubpulse, and the web app.",
        lifespan=lifespan,
    )
