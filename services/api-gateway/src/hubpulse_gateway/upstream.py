"""HTTP calls from the gateway to its upstream services (auth, deployer, metrics, scorer).

Use from a route:

    from hubpulse_gateway.deps import CurrentUser, UpstreamsDep

    @router.get("/v1/deployments")
    async def list_deployments(user: CurrentUser, upstreams: UpstreamsDep) -> Any:
        return await upstreams.deployer.json("GET", "/deployments", principal=user)

What every call gets:
- timeouts (connect and read) from the gateway settings, so nothing hangs;
- retries with exponential backoff and jitter (tenacity), only for idempotent methods (GET, HEAD, PUT, DELETE)
  or when the caller passes `retry=True`, and only on transport errors and 5xx the upstream did not answer itself
  (no `{"error": ...}` body: a crash, a proxy);
- one circuit breaker per upstream (purgatory): after `breaker_threshold` such failures in a row, calls fail at
  once with 503 for `breaker_reset_s`, then one trial call decides. A 5xx the upstream rendered itself (e.g. the
  auth service's 503 for an unreachable Hugging Face) proves it alive: it is neither retried nor counted, else a
  few anonymous requests to one such route would shut every caller out of the whole service;
- the request id (`x-request-id`) and the caller's identity forwarded as `Authorization: Bearer <access JWT>`
  (for an API-key caller, the short-lived JWT the auth service minted for the key): each upstream verifies it
  against the JWKS (`hubpulse_common.identity`); no identity header is sent or believed;
- errors: a 4xx of the upstream (already `{"error": ...}`) is raised again as `ApiError` with the same status,
  code, message and Retry-After, and so is a 503 the upstream rendered itself; an upstream down, timing out or
  behind an open breaker gives `Unavailable` (503); any other upstream 5xx gives `BadGateway` (502).

`open_upstreams(settings)` creates the clients; `app.py`'s lifespan opens them once per app (`deps.UpstreamsDep`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import aiohttp
import httpx
import orjson
from fastapi import Path
from prometheus_client import Gauge
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.messages.events import ContextChanged
from purgatory.domain.model import CLOSED, HALF_OPENED, OPENED, OpenedState
from purgatory.typing import StateName
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from hubpulse_common.http import ApiError, BadGateway, Unavailable
from hubpulse_common.identity import Identity
from hubpulse_common.logging import TRACE_HEADER, current_trace_id, get_logger
from hubpulse_common.service import CLIENT_KEEPALIVE_S
from hubpulse_gateway.settings import GatewaySettings

log = get_logger(__name__)

# An id the gateway forwards as one segment of an upstream path: no '/', '?', '#', '%' and no leading '.', so a
# caller cannot climb out of the resource ('..') or append a query string.
UpstreamId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")]

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Headers of an upstream answer that a client needs to see again.
PASSED_HEADERS = ("retry-after", "www-authenticate")


def _rendered_error(response: httpx.Response) -> bool:
    """The upstream answered with its own `{"error": {...}}` body: it is up, whatever the status."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), dict)


BREAKER_STATE = Gauge(
    "hubpulse_gateway_upstream_circuit_state", "1 for the state of the upstream breaker", ["upstream", "state"]
)


def _report_breaker(upstream: str, state: StateName) -> None:
    for each in (CLOSED, HALF_OPENED, OPENED):
        BREAKER_STATE.labels(upstream, each).set(1 if each == state else 0)


def _on_breaker_event(upstream: str, kind: str, event: object) -> None:
    if kind == "state_changed" and isinstance(event, ContextChanged):
        _report_breaker(upstream, event.state)


class _Transient(Exception):
    """A failure worth a retry and counted by the breaker: transport error, timeout or 5xx."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def passthrough_error(response: httpx.Response) -> ApiError:
    """The upstream's `{"error": {"code", "message"}}` 4xx (or rendered 503) as an ApiError with the same status."""
    code, message = "error", f"upstream answered {response.status_code}"
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            code = str(error.get("code", code))
            message = str(error.get("message", message))
    except ValueError:
        pass
    headers = {name: response.headers[name] for name in PASSED_HEADERS if name in response.headers}
    return ApiError(response.status_code, code, message, headers or None)


def identity_headers(principal: Identity | None) -> dict[str, str]:
    """The one place the gateway tells an upstream who is calling: the caller's signed access token."""
    if principal is None or not principal.token:
        return {}
    return {"authorization": f"Bearer {principal.token}"}


class KeepAlive:
    """A keep-alive aiohttp session with the gateway's upstream timeouts, opened on first use (in the app's loop):
    what the upstream clients call through (the data plane calls model servers with http1.py)."""

    def __init__(self, *, timeout_s: float, connect_timeout_s: float) -> None:
        # total also bounds the wait for a free pooled connection, so a call never hangs behind others
        self._timeout = aiohttp.ClientTimeout(
            total=connect_timeout_s + timeout_s, connect=connect_timeout_s, sock_read=timeout_s
        )
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(keepalive_timeout=CLIENT_KEEPALIVE_S),
                timeout=self._timeout,
                json_serialize=_json_text,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class UpstreamClient:
    """One upstream service; safe to share between concurrent requests."""

    def __init__(self, name: str, base_url: str, settings: GatewaySettings) -> None:
        """Timeouts, retries and the circuit breaker as `settings` says (`upstream_*`, `breaker_*`)."""
        self.name = name
        self.retries = settings.upstream_retries
        # aiohttp for the connections: per call about a third of httpx's CPU, which on the predict path is latency
        # (docs/decisions/deployer.md); answers are handed on as httpx.Response, the type the routes read
        self._base_url = base_url.rstrip("/")
        timeout_s, connect_timeout_s = settings.upstream_timeout_s, settings.upstream_connect_timeout_s
        self._session = KeepAlive(timeout_s=timeout_s, connect_timeout_s=connect_timeout_s)
        self._breakers = AsyncCircuitBreakerFactory(
            default_threshold=settings.breaker_threshold, default_ttl=settings.breaker_reset_s
        )
        self._breakers.add_listener(_on_breaker_event)
        _report_breaker(name, CLOSED)

    async def aclose(self) -> None:
        await self._session.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        principal: Identity | None = None,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        retry: bool | None = None,
    ) -> httpx.Response:
        """The upstream's 2xx/3xx response; raises ApiError otherwise (see the module docstring)."""
        method = method.upper()
        sent = {**identity_headers(principal), **(headers or {})}
        if (trace_id := current_trace_id()) is not None:
            sent[TRACE_HEADER] = trace_id
        attempts = 1 + (self.retries if (retry if retry is not None else method in IDEMPOTENT) else 0)
        try:
            # one attempt: no tenacity machinery on the predict path (docs/decisions/deployer.md, "Where the CPU goes")
            if attempts == 1:
                response = await self._once(method, path, json=json, params=params, headers=sent)
            else:
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(attempts),
                    wait=wait_exponential_jitter(multiplier=0.05, max=0.5, jitter=0.05),
                    retry=retry_if_exception_type(_Transient),
                    reraise=True,
                ):
                    with attempt:
                        response = await self._once(method, path, json=json, params=params, headers=sent)
        except OpenedState:
            raise Unavailable(f"{self.name} service is unavailable (circuit open)") from None
        except _Transient as exc:
            log.warning("upstream.failed", upstream=self.name, method=method, path=path, error=str(exc))
            if exc.status is not None:
                raise BadGateway(f"{self.name} service failed ({exc.status})") from None
            raise Unavailable(f"{self.name} service is unavailable") from None
        if response.status_code >= 500 and response.status_code != 503:
            raise BadGateway(f"{self.name} service failed ({response.status_code})")
        if response.status_code >= 400:
            raise passthrough_error(response)
        return response

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """`request`, then the JSON body (None for 204)."""
        response = await self.request(method, path, **kwargs)
        return None if response.status_code == 204 or not response.content else response.json()

    async def _once(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        breaker = await self._breakers.get_breaker(self.name)
        async with breaker:
            try:
                response = await self._send(method, path, **kwargs)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise _Transient(f"{type(exc).__name__}: {exc}") from exc
            if response.status_code >= 500 and not _rendered_error(response):
                raise _Transient(f"status {response.status_code}", response.status_code)
            return response

    async def _send(
        self, method: str, path: str, *, json: Any, params: Mapping[str, Any] | None, headers: Mapping[str, str]
    ) -> httpx.Response:
        async with self._session.get().request(
            method, self._base_url + path, json=json, params=params, headers=headers, allow_redirects=False
        ) as answer:
            body = await answer.read()
        return httpx.Response(answer.status, headers=list(answer.headers.items()), content=body)


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


@dataclass
class Upstreams:
    auth: UpstreamClient
    deployer: UpstreamClient
    metrics: UpstreamClient
    scorer: UpstreamClient

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> Upstreams:
        return cls(
            auth=UpstreamClient("auth", settings.auth_url, settings),
            deployer=UpstreamClient("deployer", settings.deployer_url, settings),
            metrics=UpstreamClient("metrics", settings.metrics_url, settings),
            scorer=UpstreamClient("scorer", settings.scorer_url, settings),
        )

    async def aclose(self) -> None:
        for client in (self.auth, self.deployer, self.metrics, self.scorer):
            await client.aclose()


@asynccontextmanager
async def open_upstreams(settings: GatewaySettings) -> AsyncIterator[Upstreams]:
    upstreams = Upstreams.from_settings(settings)
    try:
        yield upstreams
    finally:
        await upstreams.aclose()
