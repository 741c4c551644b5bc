"""Watches and alerts: `/v1/watches...`, `/v1/alerts...` and the live alert socket, forwarded to the metrics service.

Scope: the metrics service scopes every call by the caller's verified token: a caller's own watches and alerts
and their organisation's shared watches (`scope: "org"`), never another user's. The metrics service serves the
feed as /v1/watch-alerts (its /v1/alerts are deployment alert rules).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, WebSocket
from fastapi.responses import HTMLResponse, Response

from hubpulse_common.identity import Identity
from hubpulse_common.watch_schemas import (
    AlertFeedQuery,
    AlertPage,
    DeliveryAttempt,
    Watch,
    WatchAlert,
    WatchIn,
    WatchPatch,
)
from hubpulse_gateway.deps import CurrentUser, UpstreamsDep, state_of
from hubpulse_gateway.errors import error_responses
from hubpulse_gateway.routes.metrics import push_every_second
from hubpulse_gateway.upstream import UpstreamId, Upstreams

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


UnsubscribeToken = Annotated[str, Query(max_length=200)]


async def _unsubscribe_page(upstreams: Upstreams, method: str, watch_id: str, token: str) -> HTMLResponse:
    """The metrics service's page for the link (signed; no sign-in), as it is. Both methods may be retried: stopping
    a watch's e-mails twice stops them once."""
    path = f"/v1/watches/{watch_id}/unsubscribe"
    upstream = await upstreams.metrics.request(method, path, params={"token": token}, retry=True)
    return HTMLResponse(upstream.text)


@router.get(
    "/v1/watches/{watch_id}/unsubscribe",
    response_class=HTMLResponse,
    summary="The e-mail's unsubscribe link (signed; no sign-in): a page that asks to confirm",
    responses=error_responses(403, 404),
)
async def confirm_unsubscribe(watch_id: UpstreamId, upstreams: UpstreamsDep, token: UnsubscribeToken) -> HTMLResponse:
    return await _unsubscribe_page(upstreams, "GET", watch_id, token)


@router.post(
    "/v1/watches/{watch_id}/unsubscribe",
    response_class=HTMLResponse,
    summary="Stop a watch's e-mails: the confirm page's button, or a mail client's one-click (RFC 8058)",
    responses=error_responses(403, 404),
)
async def unsubscribe(watch_id: UpstreamId, upstreams: UpstreamsDep, token: UnsubscribeToken) -> HTMLResponse:
    return await _unsubscribe_page(upstreams, "POST", watch_id, token)


@router.get(
    "/v1/alerts", summary="Your alert feed, newest first, with the unread count", responses=error_responses(401, 422)
)
async def alert_feed(
    user: CurrentUser, upstreams: UpstreamsDep, query: Annotated[AlertFeedQuery, Query()]
) -> AlertPage:
    params = {
        k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in query.model_dump(exclude_none=True).items()
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
    latest: int | None = None

    async def push(user: Identity) -> None:
        nonlocal latest
        params = {"limit": str(LIVE_BATCH)} if latest is None else {"after": str(latest), "limit": str(LIVE_BATCH)}
        metrics = state_of(websocket).upstreams.metrics
        page: dict[str, Any] = await metrics.json("GET", "/v1/watch-alerts", params=params, principal=user)
        items = page["items"]
        if latest is None:
            await websocket.send_json({"type": "snapshot", "unread": page["unread"], "items": items})
            latest = max((i["seq"] for i in items), default=0)
        for item in items if params.get("after") else ():
            await websocket.send_json({"type": "alert", "unread": page["unread"], "item": item})
            latest = max(latest, item["seq"])

    await push_every_second(websocket, push)
