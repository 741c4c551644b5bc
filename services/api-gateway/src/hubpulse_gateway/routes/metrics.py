"""Monitoring routes: deployment metrics, usage export and the live metrics socket, forwarded to the metrics service.

Scope: the metrics service scopes every query by the caller's verified token: the caller's organisation; members
see their own usage, admins the whole org's (and may narrow to one member with `user_id=`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response

from hubpulse_common.http import ApiError, Forbidden, SaneDatetime, Unauthorized
from hubpulse_common.identity import Identity
from hubpulse_gateway.deps import CurrentUser, UpstreamsDep, state_of
from hubpulse_gateway.upstream import UpstreamId

router = APIRouter(tags=["monitoring"])

LIVE_INTERVAL_S = 1.0  # one push a second: what the live dashboard redraws at

Since = Annotated[
    SaneDatetime | None, Query(description="Start of the range, ISO 8601 (default: an hour before until)")
]
Until = Annotated[SaneDatetime | None, Query(description="End of the range, exclusive (default: now)")]
Id = Annotated[str | None, Query(max_length=200)]


def _params(**values: Any) -> dict[str, str]:
    return {k: v.isoformat() if isinstance(v, datetime) else str(v) for k, v in values.items() if v is not None}


@router.get("/v1/metrics/deployments/{deployment_id}", summary="Latency p50/p95/p99, error rate, throughput, resources")
async def deployment_metrics(
    deployment_id: UpstreamId,
    user: CurrentUser,
    upstreams: UpstreamsDep,
    since: Since = None,
    until: Until = None,
    user_id: Id = None,
) -> Any:
    params = _params(since=since, until=until, user_id=user_id)
    return await upstreams.metrics.json(
        "GET", f"/v1/metrics/deployments/{deployment_id}", params=params, principal=user
    )


@router.get("/v1/usage", summary="Usage per user, org or deployment as JSON or CSV")
async def usage(
    user: CurrentUser,
    upstreams: UpstreamsDep,
    format: Literal["json", "csv"] = "json",
    group_by: Literal["user", "org", "deployment"] = "user",
    since: Since = None,
    until: Until = None,
    deployment_id: Id = None,
) -> Response:
    params = _params(format=format, group_by=group_by, since=since, until=until, deployment_id=deployment_id)
    upstream = await upstreams.metrics.request("GET", "/v1/usage", params=params, principal=user)
    headers = {k: upstream.headers[k] for k in ("content-disposition",) if k in upstream.headers}
    return Response(upstream.content, media_type=upstream.headers.get("content-type"), headers=headers)


# Closing code when the socket's credential expires: not 1008, so the page reconnects with its refreshed session.
TOKEN_EXPIRED = 4001


async def authenticate(websocket: WebSocket) -> Identity | None:
    # The security layer reads a Request; a socket's handshake is a GET with the same headers and cookies.
    handshake = Request({**websocket.scope, "type": "http", "method": "GET"})
    user = await state_of(handshake).security.authenticate(handshake)
    if user is not None and user.via == "cookie" and not _same_origin(websocket):
        # a cookie rides along with any page's socket: only our own pages may use it (cross-site WebSocket hijacking)
        raise Forbidden("this socket's Origin is not this site")
    return user


def _same_origin(websocket: WebSocket) -> bool:
    origin = websocket.headers.get("origin")
    return origin is not None and urlsplit(origin).netloc == websocket.headers.get("host")


async def still_valid(websocket: WebSocket, user: Identity) -> Identity | None:
    """The caller once more when their credential has expired (an API key is verified again), else as is;
    None when it is no longer accepted."""
    if user.expires_at is None or time.time() < user.expires_at:
        return user
    try:
        return await authenticate(websocket)
    except ApiError:
        return None


@router.websocket("/v1/live/metrics")
async def live_metrics(websocket: WebSocket) -> None:
    """Every second: `{"at", "window_s", "deployments": [{deployment_id, requests, errors, p50_ms, ...}]}`.

    `?deployment_id=` narrows it to one deployment. A 4xx arrives as `{"error": {...}}` and the socket closes (1008);
    an upstream outage is pushed as `{"error": ...}` in place of that second's figures, and the pushes go on.
    """
    params = _params(deployment_id=websocket.query_params.get("deployment_id") or None)

    async def push(user: Identity) -> None:
        metrics = state_of(websocket).upstreams.metrics
        await websocket.send_json(await metrics.json("GET", "/v1/live/metrics", params=params, principal=user))

    await push_every_second(websocket, push)


async def push_every_second(websocket: WebSocket, push: Callable[[Identity], Awaitable[None]]) -> None:
    """A live socket: accept it, then `push` for its caller every LIVE_INTERVAL_S until the client leaves.

    The caller's credential is checked again once it expires (TOKEN_EXPIRED close when it no longer holds). An
    ApiError from `push`: a 4xx is the request itself being wrong (asking again won't help), so it is refused
    (1008); an upstream outage is pushed as `{"error": ...}` and the pushes go on next second.
    """
    user = await accept_signed_in(websocket)
    if user is None:
        return
    closed = asyncio.create_task(until_closed(websocket))
    try:
        while not closed.done():
            if (current := await still_valid(websocket, user)) is None:
                await websocket.send_json({"error": {"code": "token_expired", "message": "sign in again"}})
                await websocket.close(code=TOKEN_EXPIRED)
                return
            user = current
            try:
                await push(user)
            except ApiError as exc:
                if exc.status < 500:
                    await refuse(websocket, exc)
                    return
                await websocket.send_json(error_body(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(closed), LIVE_INTERVAL_S)
    except WebSocketDisconnect:
        pass
    finally:
        closed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closed


def error_body(exc: ApiError) -> dict[str, Any]:
    return {"error": {"code": exc.code, "message": exc.message}}


async def accept_signed_in(websocket: WebSocket) -> Identity | None:
    """Accept the socket and return its caller; None after refusing an anonymous or bad credential (see `refuse`)."""
    await websocket.accept()
    try:
        user = await authenticate(websocket)
        if user is None:
            raise Unauthorized("sign in or send an API key")
    except ApiError as exc:
        await refuse(websocket, exc)
        return None
    return user


async def refuse(websocket: WebSocket, exc: ApiError) -> None:
    """The error as the socket's last message, then a policy-violation close."""
    await websocket.send_json(error_body(exc))
    await websocket.close(code=1008)


async def until_closed(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, so a disconnect ends the push loop at once."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.receive_text()
