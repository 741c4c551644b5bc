"""The HTTP shape every service shares: /healthz, /readyz, /metrics, RED metrics, request ids, JSON errors.

`create_service_app` builds the FastAPI app; the service's lifespan opens its resources and registers
readiness probes with `add_readiness_probe`. Errors always leave as `{"error": {"code", "message"}}`: routes
raise a named `ApiError` (`NotFound`, `Forbidden`, `BodyNotJson`, ...), domain code raises a `DomainError` that
the service's error table (`ErrorTable`, passed to `create_service_app`) maps to a status and code, in one place.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Generic, TypeVar, cast

import asyncpg
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from pydantic import AfterValidator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hubpulse_common import __version__
from hubpulse_common.logging import TRACE_HEADER, get_logger, new_trace_id, trace_id_var
from hubpulse_common.settings import ServiceSettings
from hubpulse_common.transient import is_transient

log = get_logger(__name__)

# A pattern for free text that reaches PostgreSQL, whose text cannot hold NUL: a 422 instead of a 500.
NO_NUL = r"^[^\x00]*$"

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def sane_datetime(value: datetime) -> datetime:
    """The instant in UTC (naive means UTC), if it lies in 1970..2100; ValueError (a 422 in a schema) otherwise.

    Stores and date arithmetic overflow near year 1 and 9999 (`astimezone`, `end - window`, asyncpg's UTC
    conversion): such an input is the caller's mistake, not a 500."""
    try:
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError("date out of range (1970..2100)") from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError("date out of range (1970..2100)")
    return utc


SaneDatetime = Annotated[datetime, AfterValidator(sane_datetime)]

Probe = Callable[[], Awaitable[object]]
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

REQUESTS = Counter("hubpulse_http_requests_total", "HTTP requests", ["service", "method", "route", "status"])
LATENCY = Histogram(
    "hubpulse_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WEBSOCKETS = Gauge("hubpulse_websocket_connections", "Open WebSocket connections", ["service", "route"])
# Set at each scrape by running the /readyz probes, so an alert sees readiness even where nothing polls /readyz.
READINESS = Gauge("hubpulse_readiness_check", "1 when the readiness check passes", ["service", "check"])

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    502: "bad_gateway",
    503: "unavailable",
    504: "timeout",
}


class ApiError(Exception):
    """Raise anywhere in a request to answer `{"error": {"code", "message"}}` with this status."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


class NamedError(ApiError):
    """An ApiError whose class fixes the status and code (`class NotFound(NamedError, status=404)`: the code is the
    status's in `_STATUS_CODES` unless `code=` says otherwise); only the message (and headers) vary per raise."""

    answer: ClassVar[tuple[int, str]] = (500, "internal")

    def __init_subclass__(cls, status: int | None = None, code: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.answer = (status, code or _STATUS_CODES[status])

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(*self.answer, message, headers)


class BadRequest(NamedError, status=400): ...


class BodyNotJson(BadRequest):
    def __init__(self) -> None:
        super().__init__("body is not JSON")


class Unauthorized(NamedError, status=401): ...


class Forbidden(NamedError, status=403): ...


class NotFound(NamedError, status=404): ...


class Conflict(NamedError, status=409): ...


class BadInput(NamedError, status=422, code="bad_input"):
    """The request is well-formed JSON but its content is not what the route takes (a predict call's inputs)."""


class BadGateway(NamedError, status=502): ...


class Unavailable(NamedError, status=503): ...


@dataclass(frozen=True)
class Answer:
    """The HTTP answer to a domain error: its status and the `error.code` of the body."""

    status: int
    code: str


# A service's domain errors (`hubpulse_common.errors.DomainError` and kin) -> their HTTP answer; the most
# specific class in an exception's MRO wins.
ErrorTable = Mapping[type[Exception], Answer]


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body",))
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return "; ".join(parts) or "invalid request"


def store_not_ready(exc: BaseException) -> bool:
    """A store unreachable or not migrated yet (a service starting beside its stores): worth a retry shortly."""
    return is_transient(exc) or isinstance(exc, asyncpg.UndefinedTableError)


def unexpected_error(exc: Exception, path: object) -> JSONResponse:
    """503 with Retry-After when a store is not ready (`store_not_ready`); 500 for anything else, logged with
    its traceback."""
    if store_not_ready(exc):
        log.warning("http.unavailable", path=path, error_type=type(exc).__name__, error=str(exc)[:300])
        return error_response(
            503, "unavailable", "a backing store is not ready yet; retry shortly", {"retry-after": "5"}
        )
    log.exception("http.unhandled", path=path, error_type=type(exc).__name__)
    return error_response(500, "internal", "internal error; the request id is in the x-request-id header")


def _answering(answer: Answer) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handle(_: Request, exc: Exception) -> JSONResponse:
        retry_after = getattr(exc, "retry_after_s", None)
        headers = {"retry-after": str(retry_after)} if retry_after is not None else None
        return error_response(answer.status, answer.code, str(exc), headers)

    return handle


def install_error_handlers(app: FastAPI, errors: ErrorTable | None = None) -> None:
    for error, answer in (errors or {}).items():
        app.add_exception_handler(error, _answering(answer))

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "validation_error", _validation_message(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # only what escapes ObservabilityMiddleware (which answers route errors itself) reaches this
        return unexpected_error(exc, request.url.path)


T = TypeVar("T")


class AppState(Generic[T]):
    """The one typed state an app's lifespan (its composition root) opens and keeps as `app.state.<name>`.

    `set(app, value)` in the lifespan; `of(request_or_socket)` where code holds a connection; the instance itself
    is an async FastAPI dependency: `StateDep = Annotated[MyState, Depends(MY_STATE)]` in the service's deps.py."""

    def __init__(self, name: str) -> None:
        self.name = name

    def set(self, app: FastAPI, value: T) -> None:
        setattr(app.state, self.name, value)

    def of(self, connection: HTTPConnection) -> T:
        return cast(T, getattr(connection.app.state, self.name))

    # async: FastAPI runs a plain `def` dependency in its thread pool, a thread handoff on every request
    async def __call__(self, request: Request) -> T:
        return self.of(request)


DEFAULT_MAX_BODY_BYTES = 1024 * 1024


class BodyLimitMiddleware:
    """Refuses a request body over `max_bytes` with 413: at once from Content-Length, else as soon as the streamed
    body passes the limit (so a huge body is never read whole). Websockets and bodiless requests pass through."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> str:
        return f"request body over the limit of {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, "content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            status, code = (413, "payload_too_large") if declared.isdigit() else (400, "bad_request")
            message = self._too_large() if status == 413 else "bad Content-Length header"
            await error_response(status, code, message, {"connection": "close"})(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # an HTTPException: FastAPI re-raises it from body parsing (any other error becomes a 400)
                    raise StarletteHTTPException(413, self._too_large())
            return message

        await self.app(scope, limited, send)


class ClientAddress:
    """The client's IP: the TCP peer, unless the peer is a trusted proxy, then the right-most address of
    X-Forwarded-For that is not a trusted proxy (entries left of it are the client's to forge)."""

    def __init__(self, trusted_proxies: list[str]) -> None:
        try:
            self.trusted = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]
        except ValueError as exc:
            raise ValueError(f"trusted_proxies: {exc}") from None

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    def of(self, scope: Scope) -> str:
        client = scope.get("client")
        peer = client[0] if client else "unknown"
        if not self.trusted or not self._is_trusted(peer):
            return peer
        forwarded = ",".join(v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-forwarded-for")
        for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
            if not self._is_trusted(hop):
                return hop[:64]
        return peer


class ObservabilityMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware overhead): request id in and out, RED metrics per route template."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            trace_id_var.set(_header(scope, TRACE_HEADER) or new_trace_id())
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        trace_id = _header(scope, TRACE_HEADER) or new_trace_id()
        token = trace_id_var.set(trace_id)
        status = 500
        start = time.perf_counter()

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (TRACE_HEADER.encode(), trace_id.encode())]
            await send(message)

        try:
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as exc:
                if started:
                    raise
                # Answered here, not by Starlette's outermost error middleware: this way the 500 carries the
                # x-request-id its message points to, and is counted with its route.
                await unexpected_error(exc, scope.get("path"))(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            LATENCY.labels(self.service, method, template).observe(time.perf_counter() - start)
            REQUESTS.labels(self.service, method, template, str(status)).inc()
            trace_id_var.reset(token)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Counts a socket as open from its accept to the end of its handler."""
        gauge: Gauge | None = None

        async def send_counted(message: Message) -> None:
            nonlocal gauge
            if message["type"] == "websocket.accept" and gauge is None:
                route = scope.get("route")
                gauge = WEBSOCKETS.labels(self.service, getattr(route, "path", None) or "unmatched")
                gauge.inc()
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            if gauge is not None:
                gauge.dec()


def _header(scope: Scope, name: str) -> str | None:
    target = name.encode()
    for key, value in scope.get("headers", ()):
        if key == target:
            decoded: str = value.decode("latin-1")
            return decoded[:128]
    return None


def add_readiness_probe(app: FastAPI, name: str, probe: Probe) -> None:
    """Register a check that /readyz runs; a probe raises (or times out) when its dependency is down."""
    app.state.readiness[name] = probe


async def run_probes(probes: dict[str, Probe], timeout_s: float = 2.0) -> dict[str, str]:
    async def one(probe: Probe) -> str:
        try:
            await asyncio.wait_for(probe(), timeout_s)
        except Exception as exc:
            return f"down: {type(exc).__name__}: {exc}"[:300]
        return "ok"

    names = list(probes)
    results = await asyncio.gather(*(one(probes[n]) for n in names))
    return dict(zip(names, results, strict=True))


DOCS_ASSETS = "/docs/assets"
_SWAGGER_UI = Path(__file__).parent / "static" / "swagger-ui"


def _install_offline_docs(app: FastAPI, title: str) -> None:
    """`GET /docs`: Swagger UI from files shipped in this package (static/swagger-ui, swagger-ui-dist 5: OpenAPI
    3.1, which FastAPI writes), not FastAPI's default CDN, so the OpenAPI UI works on a machine without internet
    (the embedded platform's promise). ReDoc, which FastAPI also loads from a CDN, is not served."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=_SWAGGER_UI), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title} - API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )


def create_service_app(
    *,
    service: str,
    title: str,
    lifespan: Lifespan | None = None,
    version: str = __version__,
    description: str = "",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    errors: ErrorTable | None = None,
    **fastapi_kwargs: Any,
) -> FastAPI:
    """A FastAPI app with the shared endpoints, middleware and error handling of every hubpulse service.

    `max_body_bytes` (the service's `HUBPULSE_MAX_BODY_BYTES`): a larger request body is answered 413.
    `errors`: the service's error table, mapping its domain errors to HTTP answers."""

    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        if lifespan is None:
            yield
            return
        async with lifespan(app):
            yield

    app = FastAPI(
        title=title,
        version=version,
        description=description,
        lifespan=asynccontextmanager(_lifespan),
        **{"docs_url": None, "redoc_url": None, **fastapi_kwargs},
    )
    app.state.service = service
    _install_offline_docs(app, title)
    app.state.readiness = {}
    # inside the observability layer, so a 413 is counted and carries its request id
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(ObservabilityMiddleware, service=service)
    install_error_handlers(app, errors)

    @app.get("/healthz", tags=["ops"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service, "version": version}

    @app.get("/readyz", tags=["ops"], summary="Readiness: every store and the broker are reachable")
    async def readyz() -> JSONResponse:
        checks = await run_probes(app.state.readiness)
        ready = all(v == "ok" for v in checks.values())
        body = {"status": "ready" if ready else "not_ready", "service": service, "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        for name, result in (await run_probes(app.state.readiness)).items():
            READINESS.labels(service, name).set(1 if result == "ok" else 0)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def service_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str,
    lifespan: Lifespan,
    errors: ErrorTable | None = None,
    routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """create_service_app named and limited by the service's settings, with its routers."""
    app = create_service_app(
        service=settings.service_name,
        max_body_bytes=settings.max_body_bytes,
        title=title,
        description=description,
        lifespan=lifespan,
        errors=errors,
    )
    for router in routers:
        app.include_router(router)
    return app
