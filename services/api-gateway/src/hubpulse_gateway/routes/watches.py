"""Watches and alerts: `/v1/watches...`, `/v1/alerts...` and the live alert socket, forwarded to the metrics service.

Scope: the metrics service scopes every call by the caller's verified token: a caller's own watches and alerts
and their organisation's shared watches (`scope: "org"`), never another user's. The metrics service serves the
feed as /v1/watch-alerts (its /v1/alerts are deployment alert rules).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, Response

from hubpulse_common.http import ApiError
from hubpulse_common.watch_schemas import AlertPage, DeliveryAttempt, Watch, WatchAlert, WatchIn, WatchPatch
from hubpulse_gateway.deps import CurrentUser, UpstreamsDep, state_of
from hubpulse_gateway.errors import error_responses
from hubpulse_gateway.routes.metrics import (
    LIVE_INTERVAL_S,
    TOKEN_EXPIRED,
    accept_signed_in,
    error_body,
    refuse,
    still_valid,
    until_closed,
)
from hubpulse_gateway.upstream import UpstreamId

router = APIRouter(tags=["watches"])

LIVE_BATCH = 100


@router.post(
    "/v1/watches",
    status_code=201,
    summary="Watch a model, author, task, library or saved search",
    responses=error_responses(401, 422),
)
async def create_watch(body: WatchIn, user: CurrentUser, upstreams: UpstreamsDep) -> Watch:
    sent = body.model_dump(mode="json", exclude_unset=True)
    return Watch.model_validate(await upstreams.metrics.json("POST", "/v1/watches", principal=user, json=sent))


@router.get("/v1/watches", summary="Your watches and your organisation's shared ones", responses=error_responses(401))
async def list_watches(user: CurrentUser, upstreams: UpstreamsDep) -> list[Watch]:
    body = await upstreams.metrics.json("GET", "/v1/watches", principal=user)
    return [Watch.model_validate(w) for w in body]


@router.get("/v1/watches/{watch_id}", summary="One watch", responses=error_responses(401, 404))
async def get_watch(watch_id: UpstreamId, user: CurrentUser, upstreams: UpstreamsDep) -> Watch:
    return Watch.model_validate(await upstreams.metrics.json("GET", f"/v1/watches/{watch_id}", principal=user))


@router.patch(
    "/v1/watches/{watch_id}",
    summary="Change a watch: threshold, conditions, channels, pause",
    responses=error_responses(401, 403, 404, 422),
)
async def update_watch(watch_id: UpstreamId, body: WatchPatch, user: CurrentUser, upstreams: UpstreamsDep) -> Watch:
    sent = body.model_dump(mode="json", exclude_unset=True)
    path = f"/v1/watches/{watch_id}"
    return Watch.model_validate(await upstreams.metrics.json("PATCH", path, principal=user, json=sent))


@router.delete(
    "/v1/watches/{watch_id}", status_code=204, summary="Delete a watch", responses=error_responses(401, 403, 404)
)
async def delete_watch(watch_id: UpstreamId, user: CurrentUser, upstreams: UpstreamsDep) -> Response:
    await upstreams.metrics.request("DELETE", f"/v1/watches/{watch_id}", principal=user)
    return Response(status_code=204)


@router.post(
    "/v1/watches/{watch_id}/test",
    status_code=202,
    summary="Send a test alert through the watch's channels",
    responses=error_responses(401, 404),
)
async def test_watch(watch_id: UpstreamId, user: CurrentUser, upstreams: UpstreamsDep) -> WatchAlert:
    body = await upstreams.metrics.json("POST", f"/v1/watches/{watch_id}/test", principal=user, retry=False)
    return WatchAlert.model_validate(body)


@router.get(
    "/v1/watches/{watch_id}/unsubscribe",
    response_class=HTMLResponse,
    summary="The e-mail's unsubscribe link (signed; no sign-in)",
    responses=error_responses(403, 404),
)
async def unsubscribe(
    watch_id: UpstreamId, upstreams: UpstreamsDep, token: Annotated[str, Query(max_length=200)]
) -> HTMLResponse:
    upstream = await upstreams.metrics.request("GET", f"/v1/watches/{watch_id}/unsubscribe", params={"token": token})
    return HTMLResponse(upstream.text)


@router.get(
    "/v1/alerts", summary="Your alert feed, newest first, with the unread count", responses=error_responses(401, 422)
)
async def alert_feed(
    user: CurrentUser,
    upstreams: UpstreamsDep,
    watch_id: Annotated[str | None, Query(max_length=100)] = None,
    unread: bool = False,
    cursor: Annotated[str | None, Query(max_length=40, description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AlertPage:
    params = {
        k: str(v).lower() if isinstance(v, bool) else str(v)
        for k, v in {"watch_id": watch_id, "unread": unread, "cursor": cursor, "limit": limit}.items()
        if v is not None
    }
    return AlertPage.model_validate(
        await upstreams.metrics.json("GET", "/v1/watch-alerts", principal=user, params=params)
    )


@router.post("/v1/alerts/{alert_id}/ack", summary="Mark an alert read", responses=error_responses(401, 404))
async def ack_alert(alert_id: UpstreamId, user: CurrentUser, upstreams: UpstreamsDep) -> WatchAlert:
    body = await upstreams.metrics.json("POST", f"/v1/watch-alerts/{alert_id}/ack", principal=user)
    return WatchAlert.model_validate(body)


@router.get(
    "/v1/alerts/{alert_id}/deliveries", summary="Each delivery attempt of an alert", responses=error_responses(401, 404)
)
async def alert_deliveries(alert_id: UpstreamId, user: CurrentUser, upstreams: UpstreamsDep) -> list[DeliveryAttempt]:
    body = await upstreams.metrics.json("GET", f"/v1/watch-alerts/{alert_id}/deliveries", principal=user)
    return [DeliveryAttempt.model_validate(d) for d in body]


@router.websocket("/v1/live/alerts")
async def live_alerts(websocket: WebSocket) -> None:
    """`{"type": "snapshot", "unread", "items": [...]}` once, then `{"type": "alert", "unread", "item"}` per new alert.

    A 4xx arrives as `{"error": {...}}` and the socket closes (1008); an upstream outage is pushed as `{"error": ...}`
    and the socket keeps polling.
    """
    user = await accept_signed_in(websocket)
    if user is None:
        return
    upstreams = state_of(websocket).upstreams
    closed = asyncio.create_task(until_closed(websocket))
    latest: int | None = None
    try:
        while not closed.done():
            if (current := await still_valid(websocket, user)) is None:
                await websocket.send_json({"error": {"code": "token_expired", "message": "sign in again"}})
                await websocket.close(code=TOKEN_EXPIRED)
                return
            user = current
            params = {"limit": str(LIVE_BATCH)} if latest is None else {"after": str(latest), "limit": str(LIVE_BATCH)}
            try:
                page: dict[str, Any] = await upstreams.metrics.json(
                    "GET", "/v1/watch-alerts", params=params, principal=user
                )
            except ApiError as exc:
                if exc.status < 500:
                    await refuse(websocket, exc)
                    return
                await websocket.send_json(error_body(exc))
            else:
                items = page["items"]
                if latest is None:
                    await websocket.send_json({"type": "snapshot", "unread": page["unread"], "items": items})
                    latest = max((i["seq"] for i in items), default=0)
                for item in items if params.get("after") else ():
                    await websocket.send_json({"type": "alert", "unread": page["unread"], "item": item})
                    latest = max(latest, item["seq"])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(closed), LIVE_INTERVAL_S)
    except WebSocketDisconnect:
        pass
    finally:
        closed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closed
