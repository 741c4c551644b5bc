"""The auth service's FastAPI app; its lifespan owns the stores and background work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from hubpulse_auth.errors import HTTP_ERRORS
from hubpulse_auth.routes import new_state, router, token_verifier
from hubpulse_auth.settings import AuthSettings
from hubpulse_common.http import create_service_app
from hubpulse_common.identity import install_token_verifier
from hubpulse_common.resources import open_resources

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: AuthSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(app, settings, postgres=MIGRATIONS) as res:
            app.state.auth = state = new_state(res.require_pool(), settings)
            install_token_verifier(app, token_verifier(state.keys, settings))
            yield

    app = create_service_app(
        service=settings.service_name,
        max_body_bytes=settings.max_body_bytes,
        title="hubpulse auth",
        description="Users, tokens, API keys, organisations and roles.",
        lifespan=lifespan,
        errors=HTTP_ERRORS,
    )
    app.include_router(router)
    return app
