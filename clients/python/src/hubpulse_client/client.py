"""HubpulseClient (blocking) and AsyncHubpulseClient (asyncio), on httpx. Same methods, same answers.

from hubpulse_client import HubpulseClient

with HubpulseClient("https://hubpulse.example.com", api_key="hpk_...") as hp:
    for model in hp.search_models(task="text-generation", min_downloads=1000):
        print(model.model_id, model.probability)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, Literal, Self, TypeVar, cast

import httpx
from tenacity import AsyncRetrying, Retrying

from hubpulse_client import _calls as calls
from hubpulse_client.models import (
    DeliveryAttempt,
    Deployment,
    ModelDetail,
    ModelSummary,
    PicksPage,
    Watch,
    WatchAlert,
)

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741
HttpT = TypeVar("HttpT", httpx.Client, httpx.AsyncClient)
TransportT = TypeVar("TransportT", httpx.BaseTransport, httpx.AsyncBaseTransport)
UsageFormat = Literal["json", "csv"]
UsageGroup = Literal["user", "org", "deployment"]


def _watch_body(kind: str, target: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "target": target, **{k: v for k, v in fields.items() if v is not None}}


class _Client(Generic[HttpT, TransportT]):
    """What both flavours hold: the retry budget and the httpx client (of their flavour) they send with."""

    _http_type: type[HttpT]

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        transport: TransportT | None = None,
    ) -> None:
        self._max_retries = max_retries
        self._http: HttpT = self._http_type(
            base_url=base_url.rstrip("/"),
            headers={"user-agent": "hubpulse-client/0.1", **calls.auth_headers(token, api_key)},
            timeout=timeout,
            transport=cast(Any, transport),  # of HttpT's flavour: each subclass names the pair
        )


class HubpulseClient(_Client[httpx.Client, httpx.BaseTransport]):
    """The hubpulse API, blocking. `token=` (an access JWT) or `api_key=` (hpk_...)."""

    _http_type = httpx.Client

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, call: calls.Call[T]) -> T:
        for attempt in Retrying(**calls.retry_policy(self._max_retries)):
            with attempt:
                response = calls.check(
                    self._http.request(call.method, call.path, params=call.params, json=call.json, headers=call.headers)
                )
        return call.parse(response)

    def _every(self, call: calls.Call[calls.Page[I]] | None) -> Iterator[I]:
        """Each item of a listing, page after page."""
        while call is not None:
            page = self._call(call)
            yield from page.items
            call = calls.following(call, page)

    # catalog
    def search_models(self, **filters: Any) -> Iterator[ModelSummary]:
        """Every model matching the filters of GET /v1/models (q, task, library, min_downloads, sort, limit...),
        page after page."""
        return self._every(calls.search(filters))

    def get_model(self, model_id: str) -> ModelDetail:
        return self._call(calls.model(model_id))

    def picks(self, threshold: float = 0.45, limit: int = 50) -> PicksPage:
        return self._call(calls.picks(threshold, limit))

    # watches and alerts
    def create_watch(self, kind: str, target: str, **fields: Any) -> Watch:
        """kind: model | author | task | library | search; fields: threshold, conditions, channels, scope, name."""
        return self._call(calls.create_watch(_watch_body(kind, target, fields)))

    def watches(self) -> list[Watch]:
        return self._call(calls.watches())

    def get_watch(self, watch_id: str) -> Watch:
        return self._call(calls.watch(watch_id))

    def update_watch(self, watch_id: str, **changes: Any) -> Watch:
        return self._call(calls.update_watch(watch_id, changes))

    def delete_watch(self, watch_id: str) -> None:
        self._call(calls.delete_watch(watch_id))

    def test_watch(self, watch_id: str) -> WatchAlert:
        return self._call(calls.test_watch(watch_id))

    def alerts(self, watch_id: str | None = None, *, unread: bool = False, page_size: int = 50) -> Iterator[WatchAlert]:
        """The alert feed, newest first, every page."""
        return self._every(calls.alerts(watch_id, unread, page_size))

    def unread_alerts(self, watch_id: str | None = None) -> int:
        return self._call(calls.alerts(watch_id, True, 1)).unread

    def ack(self, alert_id: str) -> WatchAlert:
        return self._call(calls.ack(alert_id))

    def deliveries(self, alert_id: str) -> list[DeliveryAttempt]:
        return self._call(calls.deliveries(alert_id))

    # deployments and predictions
    def deploy(
        self, model_id: str, *, target: str = "local", revision: str = "main", config: Mapping[str, Any] | None = None
    ) -> Deployment:
        return self._call(calls.deploy(model_id, target, revision, config))

    def deployments(self) -> list[Deployment]:
        return self._call(calls.deployments())

    def get_deployment(self, deployment_id: str) -> Deployment:
        return self._call(calls.deployment(deployment_id))

    def delete_deployment(self, deployment_id: str) -> Deployment:
        return self._call(calls.delete_deployment(deployment_id))

    def wait_until_running(self, deployment_id: str, timeout_s: float = 300, poll_s: float = 1.0) -> Deployment:
        """The deployment once running; DeploymentFailed if it fails or is not running within timeout_s."""
        deadline = time.monotonic() + timeout_s
        while True:
            doc = self.get_deployment(deployment_id)
            if calls.running(doc, deadline, timeout_s):
                return doc
            time.sleep(poll_s)

    def predict(self, deployment_id: str, inputs: Any) -> Any:
        """One input (e.g. a text): its output. Retried on 429/503 under one idempotency key."""
        return self._call(calls.predict(deployment_id, inputs))["outputs"]

    def predict_batch(self, deployment_id: str, inputs: Sequence[Any]) -> list[Any]:
        outputs: list[Any] = self._call(calls.predict(deployment_id, list(inputs)))["outputs"]
        return outputs

    def usage_export(
        self,
        format: UsageFormat = "csv",
        group_by: UsageGroup = "user",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Any:
        """CSV text, or the JSON report (`format="json"`)."""
        return self._call(calls.usage(format, group_by, since, until))


class AsyncHubpulseClient(_Client[httpx.AsyncClient, httpx.AsyncBaseTransport]):
    """The hubpulse API for asyncio: the same methods as HubpulseClient, awaited (iterators are async)."""

    _http_type = httpx.AsyncClient

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, call: calls.Call[T]) -> T:
        async for attempt in AsyncRetrying(**calls.retry_policy(self._max_retries)):
            with attempt:
                response = calls.check(
                    await self._http.request(
                        call.method, call.path, params=call.params, json=call.json, headers=call.headers
                    )
                )
        return call.parse(response)

    async def _every(self, call: calls.Call[calls.Page[I]] | None) -> AsyncIterator[I]:
        while call is not None:
            page = await self._call(call)
            for item in page.items:
                yield item
            call = calls.following(call, page)

    def search_models(self, **filters: Any) -> AsyncIterator[ModelSummary]:
        return self._every(calls.search(filters))

    async def get_model(self, model_id: str) -> ModelDetail:
        return await self._call(calls.model(model_id))

    async def picks(self, threshold: float = 0.45, limit: int = 50) -> PicksPage:
        return await self._call(calls.picks(threshold, limit))

    async def create_watch(self, kind: str, target: str, **fields: Any) -> Watch:
        return await self._call(calls.create_watch(_watch_body(kind, target, fields)))

    async def watches(self) -> list[Watch]:
        return await self._call(calls.watches())

    async def get_watch(self, watch_id: str) -> Watch:
        return await self._call(calls.watch(watch_id))

    async def update_watch(self, watch_id: str, **changes: Any) -> Watch:
        return await self._call(calls.update_watch(watch_id, changes))

    async def delete_watch(self, watch_id: str) -> None:
        await self._call(calls.delete_watch(watch_id))

    async def test_watch(self, watch_id: str) -> WatchAlert:
        return await self._call(calls.test_watch(watch_id))

    def alerts(
        self, watch_id: str | None = None, *, unread: bool = False, page_size: int = 50
    ) -> AsyncIterator[WatchAlert]:
        return self._every(calls.alerts(watch_id, unread, page_size))

    async def unread_alerts(self, watch_id: str | None = None) -> int:
        return (await self._call(calls.alerts(watch_id, True, 1))).unread

    async def ack(self, alert_id: str) -> WatchAlert:
        return await self._call(calls.ack(alert_id))

    async def deliveries(self, alert_id: str) -> list[DeliveryAttempt]:
        return await self._call(calls.deliveries(alert_id))

    async def deploy(
        self, model_id: str, *, target: str = "local", revision: str = "main", config: Mapping[str, Any] | None = None
    ) -> Deployment:
        return await self._call(calls.deploy(model_id, target, revision, config))

    async def deployments(self) -> list[Deployment]:
        return await self._call(calls.deployments())

    async def get_deployment(self, deployment_id: str) -> Deployment:
        return await self._call(calls.deployment(deployment_id))

    async def delete_deployment(self, deployment_id: str) -> Deployment:
        return await self._call(calls.delete_deployment(deployment_id))

    async def wait_until_running(self, deployment_id: str, timeout_s: float = 300, poll_s: float = 1.0) -> Deployment:
        deadline = time.monotonic() + timeout_s
        while True:
            doc = await self.get_deployment(deployment_id)
            if calls.running(doc, deadline, timeout_s):
                return doc
            await asyncio.sleep(poll_s)

    async def predict(self, deployment_id: str, inputs: Any) -> Any:
        return (await self._call(calls.predict(deployment_id, inputs)))["outputs"]

    async def predict_batch(self, deployment_id: str, inputs: Sequence[Any]) -> list[Any]:
        outputs: list[Any] = (await self._call(calls.predict(deployment_id, list(inputs))))["outputs"]
        return outputs

    async def usage_export(
        self,
        format: UsageFormat = "csv",
        group_by: UsageGroup = "user",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Any:
        return await self._call(calls.usage(format, group_by, since, until))
