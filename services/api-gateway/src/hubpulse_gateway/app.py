"""The gateway service's FastAPI app; its lifespan owns the stores and background work.

Each domain is one router under `routes/`; add yours with one `include_router` line below.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import FastAPI
from pydantic import SecretStr
from starlette.middleware import Middleware

from hubpulse_common.http import create_service_app
from hubpulse_common.logging import configure_logging
from hubpulse_common.resources import open_resources
from hubpulse_common.settings import load_settings
from hubpulse_common.supervise import report
from hubpulse_gateway.catalog.cache import SEARCH_PATH, SearchCache, SearchCacheMiddleware
from hubpulse_gateway.catalog.live import PicksFeed
from hubpulse_gateway.catalog.planner import SamplePlanner
from hubpulse_gateway.openapi import install_openapi
from hubpulse_gateway.routes import auth, deployments, metrics, models, watches, web
from hubpulse_gateway.routes.models import CatalogState
from hubpulse_gateway.settings import GatewaySettings


def with_session_settings(url: str, **settings: str) -> str:
    """The URL with PostgreSQL session settings as query parameters (asyncpg sends them at connect; they
    survive the pool's RESET ALL). Settings already in the URL win."""
    parts = urlsplit(url)
    query = {**settings, **dict(parse_qsl(parts.query))}
    return urlunsplit(parts._replace(query=urlencode(query)))


def create_app(settings: GatewaySettings) -> FastAPI:
    # work_mem: a common word's bitmap (a tenth of a 2M catalog) stays exact; at the default 4 MB it went
    # lossy and the heap recheck read every row of those pages (5x slower).
    db_url = with_session_settings(settings.database_url.get_secret_value(), work_mem=settings.db_work_mem)
    db_settings = settings.model_copy(update={"database_url": SecretStr(db_url)})

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(app, db_settings, postgres=True, kafka=True, pool_size=settings.db_pool_size) as res:
            pool = res.require_pool()
            feed = PicksFeed(pool, settings.live_poll_s, lookback_s=10 * settings.live_poll_s)
            cache = SearchCache(settings.search_cache_size, settings.search_cache_ttl_s)
            planner = SamplePlanner(pool, settings.search_sample_rows, settings.search_sample_refresh_s)
            await planner.start()
            report(app, planner.refresher)
            app.state.catalog = CatalogState(pool, cache, planner, feed, settings.hub_url)
            try:
                yield
            finally:
                await planner.close()
                await feed.close()

    app = create_service_app(
        service=settings.service_name,
        max_body_bytes=settings.max_body_bytes,
        title="hubpulse gateway",
        description=(
            "The one public API of hubpulse, and the web app. Live pushes: `WS /v1/live/picks?threshold=0.45` "
            'sends `{"type": "snapshot", "items": [Pick]}` then `{"type": "pick", "item": Pick}` per new pick.'
        ),
        lifespan=lifespan,
    )
    # Innermost (after the shared middleware, before routing): cached searches skip FastAPI, not the limits.
    # The route comes from the router itself: in app.router.routes an included router is one opaque entry.
    search_route = next(r for r in models.router.routes if getattr(r, "path", None) == SEARCH_PATH)
    app.user_middleware.append(Middleware(SearchCacheMiddleware, route=search_route))
    app.include_router(models.router)
    app.include_router(deployments.router)
    app.include_router(metrics.router)
    app.include_router(watches.router)
    app.include_router(web.router)
    auth.install(app, settings)  # auth routes, rate limit, upstream clients, credential verifier
    web.mount_static(app)
    app.add_middleware(web.SecurityHeadersMiddleware)
    install_openapi(app)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn's multi-worker mode: each worker process builds its app from the environment."""
    settings = load_settings(GatewaySettings)
    configure_logging(settings.service_name, settings.log_level, settings.log_format, settings.environment)
    return create_app(settings)
