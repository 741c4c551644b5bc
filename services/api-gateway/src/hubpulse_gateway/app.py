"""The gateway service's FastAPI app, and its composition root: the lifespan opens the stores, the upstream
clients, the credential verifier and the catalog state, and keeps them as one `deps.GatewayState`; routes reach
them through the `Annotated` aliases of `deps.py`.

Each domain is one router under `routes/`; add yours with one `include_router` line below.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import FastAPI
from pydantic import SecretStr
from starlette.middleware import Middleware

from hubpulse_common.http import ClientAddress, create_service_app
from hubpulse_common.logging import configure_logging
from hubpulse_common.resources import open_resources
from hubpulse_common.settings import load_settings
from hubpulse_common.supervise import report
from hubpulse_gateway.catalog.cache import SEARCH_PATH, SearchCache, SearchCacheMiddleware
from hubpulse_gateway.catalog.live import PicksFeed
from hubpulse_gateway.catalog.sample_refresher import SampleRefresher
from hubpulse_gateway.dataplane import open_model_servers
from hubpulse_gateway.deps import GATEWAY_STATE, LOGIN_LIMITS, CatalogState, GatewayState
from hubpulse_gateway.errors import HTTP_ERRORS
from hubpulse_gateway.openapi import install_openapi
from hubpulse_gateway.ratelimit import AccountLogins, FailoverLimiter, shared_limiter
from hubpulse_gateway.routes import auth, deployments, metrics, models, watches, web
from hubpulse_gateway.security import RateLimitMiddleware, Security
from hubpulse_gateway.settings import GatewaySettings
from hubpulse_gateway.upstream import open_upstreams


def with_session_settings(url: str, **settings: str) -> str:
    """The URL with PostgreSQL session settings as query parameters (asyncpg sends them at connect; they
    survive the pool's RESET ALL). Settings already in the URL win."""
    parts = urlsplit(url)
    query = {**settings, **dict(parse_qsl(parts.query))}
    return urlunsplit(parts._replace(query=urlencode(query)))


def install_security(app: FastAPI, settings: GatewaySettings) -> Callable[[], Awaitable[None]]:
    """The auth routes and the per principal/IP rate limit; returns what closes the limiter's store (the
    lifespan calls it). The verifier and upstream clients they use are the lifespan's `GatewayState`."""
    limiter, store = FailoverLimiter(), None
    if settings.rate_limit_storage == "mongodb":
        url, database = settings.mongo_url.get_secret_value(), settings.mongo_database
        limiter, store = shared_limiter(
            url, database, timeout_s=settings.rate_limit_store_timeout_s, retry_s=settings.rate_limit_store_retry_s
        )
    LOGIN_LIMITS.set(app, AccountLogins(limiter, settings.login_account_rate_limit))
    app.include_router(auth.router)
    app.add_middleware(
        RateLimitMiddleware,
        limit=settings.api_rate_limit,
        auth_limit=settings.auth_ip_rate_limit,
        client=ClientAddress(settings.trusted_proxies),
        limiter=limiter,
    )

    async def close() -> None:
        if store is not None:
            await store.close()

    return close


def create_app(settings: GatewaySettings) -> FastAPI:
    # work_mem: a common word's bitmap stays exact, not lossy with a heap recheck of every row of its pages
    # (docs/decisions/search-and-web.md, "work_mem").
    db_url = with_session_settings(settings.database_url.get_secret_value(), work_mem=settings.db_work_mem)
    db_settings = settings.model_copy(update={"database_url": SecretStr(db_url)})

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            open_resources(app, db_settings, postgres=True, kafka=True, pool_size=settings.db_pool_size) as res,
            open_upstreams(settings) as upstreams,
            open_model_servers(settings) as model_servers,
        ):
            pool = res.require_pool()
            feed = PicksFeed(pool, settings.live_poll_s, lookback_s=10 * settings.live_poll_s)
            cache = SearchCache(settings.search_cache_size, settings.search_cache_ttl_s)
            refresher = SampleRefresher(pool, settings.search_sample_rows, settings.search_sample_refresh_s)
            await refresher.start()
            report(app, refresher.refresher)
            catalog = CatalogState(pool, cache, refresher, feed, settings.hub_url)
            security = Security(settings, upstreams)
            GATEWAY_STATE.set(app, GatewayState(upstreams, security, catalog, res.require_bus(), model_servers))
            try:
                yield
            finally:
                await refresher.close()
                await feed.close()
                await close_limiter()

    app = create_service_app(
        service=settings.service_name,
        max_body_bytes=settings.max_body_bytes,
        title="hubpulse gateway",
        description=(
            "The one public API of hubpulse, and the web app. Live pushes: `WS /v1/live/picks?threshold=0.45` "
            'sends `{"type": "snapshot", "items": [Pick]}` then `{"type": "pick", "item": Pick}` per new pick.'
        ),
        lifespan=lifespan,
        errors=HTTP_ERRORS,
    )
    # Innermost (after the shared middleware, before routing): cached searches skip FastAPI, not the limits.
    # The route comes from the router itself: in app.router.routes an included router is one opaque entry.
    search_route = next(r for r in models.router.routes if getattr(r, "path", None) == SEARCH_PATH)
    # Predict outside the search cache: a predict call need not pass through it
    app.user_middleware.append(Middleware(deployments.PredictMiddleware, route=deployments.predict_route()))
    app.user_middleware.append(Middleware(SearchCacheMiddleware, route=search_route))
    app.include_router(models.router)
    app.include_router(deployments.router)
    app.include_router(metrics.router)
    app.include_router(watches.router)
    app.include_router(web.router)
    close_limiter = install_security(app, settings)
    web.mount_static(app)
    app.add_middleware(web.SecurityHeadersMiddleware)
    install_openapi(app)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn's multi-worker mode: each worker process builds its app from the environment."""
    settings = load_settings(GatewaySettings)
    configure_logging(settings.service_name, settings.log_level, settings.log_format, settings.environment)
    return create_app(settings)
