"""HTTP and WebSocket endpoints of the metrics service (the gateway forwards its public routes here).

Every route verifies the caller's access token (`hubpulse_common.identity`) and scopes itself by it, whatever the
query says: the caller's organisation only; a member sees their own calls, an admin may narrow to any member
(`user_id=`); a deployment's state and resources only to its owner or an admin of its organisation.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse, Response
from pymongo.asynchronous.database import AsyncDatabase

from hubpulse_common.http import ApiError, Forbidden, NotFound, SaneDatetime
from hubpulse_common.identity import CallerIdentity, Identity
from hubpulse_metrics import repository
from hubpulse_metrics.deps import state_of
from hubpulse_metrics.errors import BadRange
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

Since = Annotated[SaneDatetime | None, Query(description="Start of the range (ISO 8601, UTC when naive)")]
Until = Annotated[SaneDatetime | None, Query(description="End of the range, exclusive (default: now)")]
Id = Annotated[str | None, Query(max_length=200)]


def _scope(who: Identity, deployment_id: str | None, user_id: str | None) -> Filters:
    """The caller's filters: their organisation, and their own calls unless they are an admin."""
    if user_id is not None and user_id != who.user_id and not who.has_role("admin"):
        raise Forbidden("only an admin sees other members' usage")
    own = user_id if who.has_role("admin") else who.user_id
    return Filters(deployment_id=deployment_id, user_id=own, org_id=who.org_id)


async def _may_see_deployment(db: AsyncDatabase[dict[str, Any]], who: Identity, deployment_id: str) -> bool:
    """Whether the caller may see a deployment's state and resources; 404 if it is another organisation's."""
    owner = await repository.deployment_owner(db, deployment_id)
    if owner is None:
        return False  # no transition seen yet: nothing ties its resources to an organisation
    user_id, org_id = owner
    if org_id != who.org_id or (user_id != who.user_id and not who.has_role("admin")):
        raise NotFound(f"no deployment {deployment_id}")
    return True


def _window(settings: MetricsSettings, since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    try:
        return clamp_window(
            since,
            until,
            datetime.now(UTC),
            timedelta(minutes=settings.default_query_window_min),
            timedelta(hours=settings.max_query_window_h),
        )
    except ValueError as exc:
        raise BadRange(str(exc)) from None


@router.get("/metrics/deployments/{deployment_id}", summary="Latency, errors, throughput and resources of a deployment")
async def deployment_metrics(
    request: Request,
    who: CallerIdentity,
    deployment_id: Annotated[str, Path(max_length=200)],
    since: Since = None,
    until: Until = None,
    user_id: Id = None,
) -> DeploymentMetrics:
    db, settings = state_of(request).db, state_of(request).settings
    start, end = _window(settings, since, until)
    filters = _scope(who, deployment_id, user_id)
    visible = await _may_see_deployment(db, who, deployment_id)
    window_calls = await repository.calls(db, filters, start, end)
    cpu, memory, duration, samples = (
        await repository.resources(db, deployment_id, start, end) if visible else ([], [], [], 0)
    )
    return DeploymentMetrics(
        deployment_id=deployment_id,
        since=start,
        until=end,
        filters=filters.as_dict(),
        summary=latency_stats(window_calls, (end - start).total_seconds()),
        series=minute_series(window_calls),
        resources=resource_stats(cpu, memory, duration, samples),
        state=await repository.deployment_state(db, deployment_id) if visible else None,
    )


@router.get("/usage", summary="Usage per user, org or deployment, as JSON or CSV", response_model=UsageReport)
async def usage(
    request: Request,
    who: CallerIdentity,
    group_by: UsageGroup = "user",
    format: Literal["json", "csv"] = "json",
    since: Since = None,
    until: Until = None,
    deployment_id: Id = None,
    user_id: Id = None,
) -> Response | UsageReport:
    start, end = _window(state_of(request).settings, since, until)
    filters = _scope(who, deployment_id, user_id)
    rows = await repository.usage(state_of(request).db, group_by, filters, start, end)
    if format == "csv":
        return PlainTextResponse(
            usage_csv(group_by, rows),
            media_type="text/csv",
            headers={"content-disposition": f'attachment; filename="usage-by-{group_by}.csv"'},
        )
    return UsageReport(group_by=group_by, since=start, until=end, rows=rows)


async def _snapshot(request: Request | WebSocket, filters: Filters) -> LiveSnapshot:
    settings = state_of(request).settings
    now = datetime.now(UTC)
    since = now - timedelta(seconds=settings.live_window_s)
    window_calls = await repository.calls(state_of(request).db, filters, since, now)
    return LiveSnapshot(
        at=now, window_s=settings.live_window_s, deployments=live_stats(window_calls, settings.live_window_s)
    )


@router.get("/live/metrics", summary="What the live socket pushes: the trailing window per deployment")
async def live_snapshot(
    request: Request, who: CallerIdentity, deployment_id: Id = None, user_id: Id = None
) -> LiveSnapshot:
    return await _snapshot(request, _scope(who, deployment_id, user_id))


@router.websocket("/live/metrics")
async def live_metrics(websocket: WebSocket, who: CallerIdentity, deployment_id: Id = None) -> None:
    filters = _scope(who, deployment_id, None)
    await websocket.accept()
    interval = state_of(websocket).settings.live_interval_s
    try:
        while True:
            snapshot = await _snapshot(websocket, filters)
            await websocket.send_text(snapshot.model_dump_json())
            await asyncio.sleep(interval)
    except WebSocketDisconnect:
        return


@router.post("/resources", status_code=202, summary="Resource samples from model servers (CPU, memory, duration)")
async def ingest_resources(request: Request, body: ResourceBatch) -> dict[str, int]:
    return {"stored": await repository.store_resources(state_of(request).db, body.samples)}


@router.get("/alerts", summary="Alert states, latest first")
async def list_alerts(request: Request, who: CallerIdentity, deployment_id: Id = None) -> list[Alert]:
    alerts = await repository.alerts(state_of(request).db, deployment_id)
    visible = {d for d in {a.deployment_id for a in alerts} if await _may_see(request, who, d)}
    return [a for a in alerts if a.deployment_id in visible]


async def _may_see(request: Request, who: Identity, deployment_id: str) -> bool:
    try:
        return await _may_see_deployment(state_of(request).db, who, deployment_id)
    except ApiError:
        return False
