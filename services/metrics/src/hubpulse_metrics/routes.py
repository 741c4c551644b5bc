"""HTTP and WebSocket endpoints of the metrics service (the gateway forwards its public routes here)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse, Response
from pymongo.asynchronous.database import AsyncDatabase

from hubpulse_common.http import ApiError
from hubpulse_metrics import repository
from hubpulse_metrics.repository import Filters
from hubpulse_metrics.schemas import (
    Alert,
    DeploymentMetrics,
    LiveSnapshot,
    ResourceBatch,
    UsageGroup,
    UsageReport,
)
from hubpulse_metrics.service import clamp_window, latency_stats, live_stats, minute_series, resource_stats, usage_csv
from hubpulse_metrics.settings import MetricsSettings

router = APIRouter(prefix="/v1", tags=["metrics"])

Since = Annotated[datetime | None, Query(description="Start of the range (ISO 8601, UTC when naive)")]
Until = Annotated[datetime | None, Query(description="End of the range, exclusive (default: now)")]
Id = Annotated[str | None, Query(max_length=200)]


def _db(request: Request | WebSocket) -> AsyncDatabase[dict[str, Any]]:
    db: AsyncDatabase[dict[str, Any]] = request.app.state.db
    return db


def _settings(request: Request | WebSocket) -> MetricsSettings:
    settings: MetricsSettings = request.app.state.settings
    return settings


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _window(settings: MetricsSettings, since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    try:
        return clamp_window(
            _utc(since),
            _utc(until),
            datetime.now(UTC),
            timedelta(minutes=settings.default_query_window_min),
            timedelta(hours=settings.max_query_window_h),
        )
    except ValueError as exc:
        raise ApiError(400, "bad_range", str(exc)) from None


@router.get("/metrics/deployments/{deployment_id}", summary="Latency, errors, throughput and resources of a deployment")
async def deployment_metrics(
    request: Request,
    deployment_id: str,
    since: Since = None,
    until: Until = None,
    user_id: Id = None,
    org_id: Id = None,
) -> DeploymentMetrics:
    db, settings = _db(request), _settings(request)
    start, end = _window(settings, since, until)
    filters = Filters(deployment_id=deployment_id, user_id=user_id, org_id=org_id)
    window_calls = await repository.calls(db, filters, start, end)
    cpu, memory, duration, samples = await repository.resources(db, deployment_id, start, end)
    return DeploymentMetrics(
        deployment_id=deployment_id,
        since=start,
        until=end,
        filters=filters.as_dict(),
        summary=latency_stats(window_calls, (end - start).total_seconds()),
        series=minute_series(window_calls),
        resources=resource_stats(cpu, memory, duration, samples),
        state=await repository.deployment_state(db, deployment_id),
    )


@router.get("/usage", summary="Usage per user, org or deployment, as JSON or CSV", response_model=UsageReport)
async def usage(
    request: Request,
    group_by: UsageGroup = "user",
    format: Literal["json", "csv"] = "json",
    since: Since = None,
    until: Until = None,
    deployment_id: Id = None,
    user_id: Id = None,
    org_id: Id = None,
) -> Response | UsageReport:
    start, end = _window(_settings(request), since, until)
    filters = Filters(deployment_id=deployment_id, user_id=user_id, org_id=org_id)
    rows = await repository.usage(_db(request), group_by, filters, start, end)
    if format == "csv":
        return PlainTextResponse(
            usage_csv(group_by, rows),
            media_type="text/csv",
            headers={"content-disposition": f'attachment; filename="usage-by-{group_by}.csv"'},
        )
    return UsageReport(group_by=group_by, since=start, until=end, rows=rows)


async def _snapshot(request: Request | WebSocket, filters: Filters) -> LiveSnapshot:
    settings = _settings(request)
    now = datetime.now(UTC)
    since = now - timedelta(seconds=settings.live_window_s)
    window_calls = await repository.calls(_db(request), filters, since, now)
    return LiveSnapshot(
        at=now, window_s=settings.live_window_s, deployments=live_stats(window_calls, settings.live_window_s)
    )


@router.get("/live/metrics", summary="What the live socket pushes: the trailing window per deployment")
async def live_snapshot(
    request: Request, deployment_id: Id = None, user_id: Id = None, org_id: Id = None
) -> LiveSnapshot:
    return await _snapshot(request, Filters(deployment_id=deployment_id, user_id=user_id, org_id=org_id))


@router.websocket("/live/metrics")
async def live_metrics(websocket: WebSocket, deployment_id: Id = None, user_id: Id = None, org_id: Id = None) -> None:
    await websocket.accept()
    interval = _settings(websocket).live_interval_s
    filters = Filters(deployment_id=deployment_id, user_id=user_id, org_id=org_id)
    try:
        while True:
            snapshot = await _snapshot(websocket, filters)
            await websocket.send_text(snapshot.model_dump_json())
            await asyncio.sleep(interval)
    except WebSocketDisconnect:
        return


@router.post("/resources", status_code=202, summary="Resource samples from model servers (CPU, memory, duration)")
async def ingest_resources(request: Request, body: ResourceBatch) -> dict[str, int]:
    return {"stored": await repository.store_resources(_db(request), body.samples)}


@router.get("/alerts", summary="Alert states, latest first")
async def list_alerts(request: Request, deployment_id: Id = None) -> list[Alert]:
    return await repository.alerts(_db(request), deployment_id)
