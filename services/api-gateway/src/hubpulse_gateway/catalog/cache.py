"""Hot-query cache of finished search responses, and the fast path that answers a repeat before FastAPI runs.

Two keys to one body: the raw query string (a repeat of the exact URL is answered by `SearchCacheMiddleware`
without routing, parameter validation or the handler, which were most of a cached request's cost) and the
normalised query (the same search spelled differently, filled in by the route). Only 200 answers are cached;
an entry lives `ttl_s`, so results are at most that stale.
"""

from __future__ import annotations

from cachetools import TTLCache
from prometheus_client import Counter
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from hubpulse_gateway.catalog.query import SearchQuery

SEARCH_PATH = "/v1/models"
CACHE_HEADER = b"x-cache"
LOOKUPS = Counter("hubpulse_gateway_search_cache_total", "Search requests answered from the cache or not", ["result"])


class SearchCache:
    """`size` 0 (or `ttl_s` 0) turns caching off, e.g. to measure the uncached path."""

    def __init__(self, size: int, ttl_s: float) -> None:
        self.enabled = size > 0 and ttl_s > 0
        self._by_raw: TTLCache[bytes, bytes] = TTLCache(max(size, 1), max(ttl_s, 1e-9))
        self._by_query: TTLCache[SearchQuery, bytes] = TTLCache(max(size, 1), max(ttl_s, 1e-9))

    def raw(self, query_string: bytes) -> bytes | None:
        """The fast path: a miss is counted by `get`, which the route calls next."""
        body = self._by_raw.get(query_string) if self.enabled else None
        if body is not None:
            LOOKUPS.labels("hit").inc()
        return body

    def get(self, query: SearchQuery) -> bytes | None:
        body = self._by_query.get(query) if self.enabled else None
        LOOKUPS.labels("miss" if body is None else "hit").inc()
        return body

    def put(self, query_string: bytes, query: SearchQuery, body: bytes) -> None:
        if self.enabled:
            self._by_raw[query_string] = body
            self._by_query[query] = body


class SearchCacheMiddleware:
    """Answers `GET /v1/models?<a cached query string>` from the cache; everything else passes through.

    Installed innermost (inside the rate limit and the RED metrics/request-id middleware), so a cached answer
    is still counted, limited and carries its request id; `scope["route"]` names the route for the metrics.
    """

    def __init__(self, app: ASGIApp, route: BaseRoute) -> None:
        self.app = app
        self.route = route  # the search route, named in the scope of a cached answer for the metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == SEARCH_PATH and scope["method"] == "GET":
            gateway = getattr(scope["app"].state, "gateway", None)  # deps.GatewayState, once the lifespan ran
            body = gateway.catalog.cache.raw(scope["query_string"]) if gateway is not None else None
            if body is not None:
                scope["route"] = self.route
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (CACHE_HEADER, b"hit"),
                ]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
