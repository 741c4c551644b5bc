"""The auth service's FastAPI app and its composition root: the lifespan opens the stores and builds the one
`deps.AuthState` the routes get through `deps.AuthDep`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from fastapi import FastAPI
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from hubpulse_auth.deps import AUTH_STATE, AuthState
from hubpulse_auth.errors import HTTP_ERRORS
from hubpulse_auth.hashing import HashingGate
from hubpulse_auth.keys import KeyRing
from hubpulse_auth.oauth import HfSignIn
from hubpulse_auth.routes import router
from hubpulse_auth.settings import AuthSettings
from hubpulse_common.http import service_app
from hubpulse_common.identity import TokenVerifier, install_token_verifier
from hubpulse_common.resources import open_resources

MIGRATIONS = Path(__file__).parent / "migrations"


def new_state(pool: asyncpg.Pool, settings: AuthSettings) -> AuthState:
    return AuthState(
        pool,
        settings,
        KeyRing(pool, settings),
        HfSignIn(settings),
        MovingWindowRateLimiter(MemoryStorage()),
        HashingGate(settings.hash_memory_budget_mib, settings.hash_wait_s),
    )


def token_verifier(keys: KeyRing, settings: AuthSettings) -> TokenVerifier:
    """The shared verifier, reading this service's own published keys instead of its JWKS over HTTP."""
    return TokenVerifier(keys.jwks, settings)


def create_app(settings: AuthSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(app, settings, postgres=MIGRATIONS) as res:
            AUTH_STATE.set(app, state := new_state(res.require_pool(), settings))
            install_token_verifier(app, token_verifier(state.keys, settings))
            yield

    return service_app(
        settings,
        title="hubpulse auth",
        description="Users, tokens, API keys, organisations and roles.",
        lifespan=lifespan,
        errors=HTTP_ERRORS,
        routers=[router],
    )
