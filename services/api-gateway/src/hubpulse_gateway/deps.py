"""The gateway's request dependencies, as `Annotated` aliases: what a route may ask for.

`app.py` is the composition root: its lifespan opens the upstream clients, the credential verifier and the catalog
state once and keeps them as one typed `GatewayState`; the aliases here hand parts of it to routes:

    from hubpulse_gateway.deps import CatalogDep, CurrentUser, UpstreamsDep

    @router.get("/v1/things")
    async def things(user: CurrentUser, upstreams: UpstreamsDep) -> Any: ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from hubpulse_common.http import AppState, Unauthorized
from hubpulse_common.identity import Identity, require_role
from hubpulse_common.kafka import EventBus
from hubpulse_gateway.catalog.cache import SearchCache
from hubpulse_gateway.catalog.live import PicksFeed
from hubpulse_gateway.catalog.sample_refresher import SampleRefresher
from hubpulse_gateway.dataplane import ModelServers
from hubpulse_gateway.ratelimit import AccountLogins
from hubpulse_gateway.security import ACCESS_COOKIE, CSRF_COOKIE, CSRF_HEADER, Security
from hubpulse_gateway.upstream import Upstreams


@dataclass(frozen=True)
class CatalogState:
    """What the catalog routes need."""

    pool: asyncpg.Pool
    cache: SearchCache
    refresher: SampleRefresher
    feed: PicksFeed
    hub_url: str  # GatewaySettings.hub_url: its default lives there, once


@dataclass(frozen=True)
class GatewayState:
    """Everything the gateway's lifespan opened, for the length of the app (`app.state.gateway`)."""

    upstreams: Upstreams
    security: Security
    catalog: CatalogState
    bus: EventBus
    model_servers: ModelServers | None = None  # predict's data plane, when the deployer's secret is configured


GATEWAY_STATE: AppState[GatewayState] = AppState("gateway")
state_of = GATEWAY_STATE.of  # for a request or a WebSocket


# async: FastAPI runs a plain `def` dependency in its thread pool, a thread handoff on every request
async def _upstreams(request: Request) -> Upstreams:
    return state_of(request).upstreams


async def _security(request: Request) -> Security:
    return state_of(request).security


async def _catalog(request: Request) -> CatalogState:
    return state_of(request).catalog


async def _bus(request: Request) -> EventBus:
    return state_of(request).bus


UpstreamsDep = Annotated[Upstreams, Depends(_upstreams)]
SecurityDep = Annotated[Security, Depends(_security)]
CatalogDep = Annotated[CatalogState, Depends(_catalog)]
BusDep = Annotated[EventBus, Depends(_bus)]

# Set by `install_security` with the rate limiter it opens (the lifespan's state does not hold the limiter).
LOGIN_LIMITS: AppState[AccountLogins] = AppState("login_limits")
AccountLoginsDep = Annotated[AccountLogins, Depends(LOGIN_LIMITS)]


# Declared so that the OpenAPI document lists how to authenticate (generated clients send them); the
# credentials themselves are read by Security.authenticate, in the order the module docstring gives.
_BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    bearerFormat="JWT",
    description="An access JWT from /v1/auth/login, or an API key (hpk_...) as the bearer token",
)
_API_KEY = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKeyAuth", description="An API key from POST /v1/api-keys"
)
_COOKIE = APIKeyCookie(
    name=ACCESS_COOKIE,
    auto_error=False,
    scheme_name="cookieAuth",
    description="The web session cookie set by /v1/auth/login; writes must also send csrfToken",
)
_CSRF = APIKeyHeader(
    name=CSRF_HEADER,
    auto_error=False,
    scheme_name="csrfToken",
    description=f"With cookieAuth, on writes: the value of the {CSRF_COOKIE} cookie",
)


async def optional_user(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    _api_key: Annotated[str | None, Depends(_API_KEY)],
    _cookie: Annotated[str | None, Depends(_COOKIE)],
    _csrf: Annotated[str | None, Depends(_CSRF)],
) -> Identity | None:
    return await state_of(request).security.authenticate(request)


async def current_user(principal: Annotated[Identity | None, Depends(optional_user)]) -> Identity:
    if principal is None:
        raise Unauthorized("sign in or send an API key", {"www-authenticate": "Bearer"})
    return principal


CurrentUser = Annotated[Identity, Depends(current_user)]
OptionalUser = Annotated[Identity | None, Depends(optional_user)]
MemberUser = Annotated[Identity, Depends(require_role("member", current_user))]
AdminUser = Annotated[Identity, Depends(require_role("admin", current_user))]
