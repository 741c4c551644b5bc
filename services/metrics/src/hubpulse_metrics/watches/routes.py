"""HTTP endpoints of watches and their alerts (the gateway forwards /v1/watches and /v1/alerts here).

Every route is scoped by the caller's verified token: a caller sees their own watches and alerts and their
organisation's shared ones (`scope: "org"`), never another user's. The feed lives at /v1/watch-alerts here
(this service's /v1/alerts lists deployment alert rules); the gateway serves it as /v1/alerts.
"""

from __future__ import annotations

import hmac
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import Field

from hubpulse_common.http import Forbidden
from hubpulse_common.identity import CallerIdentity, Identity
from hubpulse_common.watch_schemas import (
    AlertFeedQuery,
    AlertPage,
    Channels,
    DeliveryAttempt,
    Watch,
    WatchAlert,
    WatchIn,
    WatchPatch,
)
from hubpulse_metrics.deps import state_of
from hubpulse_metrics.errors import (
    AlertNotFound,
    BadCursor,
    BadSearch,
    BadUnsubscribeToken,
    WatchNotFound,
    WebhookRefused,
)
from hubpulse_metrics.watches import repository, service
from hubpulse_metrics.watches.delivery import unsubscribe_token, webhook_refusal
from hubpulse_metrics.watches.handlers import alert_doc

router = APIRouter(prefix="/v1", tags=["watches"])
T = TypeVar("T")

WatchId = Annotated[str, Path(min_length=1, max_length=100)]


async def _check(request: Request, who: Identity, kind: str, target: str, channels: Channels | None) -> None:
    if kind == "search":
        try:
            service.parse_search(target)
        except ValueError as exc:
            raise BadSearch(f"target: {exc}") from None
    if channels is not None and channels.webhook is not None:
        refusal = await webhook_refusal(str(channels.webhook), state_of(request).settings)
        if refusal is not None:
            raise WebhookRefused(f"channels.webhook: {refusal}")


def _may_edit(who: Identity, doc: dict[str, Any]) -> None:
    if doc["user_id"] != who.user_id and not who.has_role("admin"):
        raise Forbidden("only its creator or an admin of the organisation changes a shared watch")


def _found(value: T | None, missing: Exception) -> T:
    """`value`, or `missing` raised when there is none (a 404 of the service's error table)."""
    if value is None:
        raise missing
    return value


async def _own(request: Request, who: Identity, watch_id: str) -> dict[str, Any]:
    return _found(
        await repository.get_watch_doc(state_of(request).db, who, watch_id), WatchNotFound(f"no watch {watch_id}")
    )


@router.post("/watches", status_code=201, summary="Watch a model, author, task, library or saved search")
async def create_watch(request: Request, who: CallerIdentity, body: WatchIn) -> Watch:
    if body.scope == "org" and not who.has_role("member"):
        raise Forbidden("sharing a watch with the organisation needs the member role")
    await _check(request, who, body.kind, body.target, body.channels)
    return await repository.create_watch(state_of(request).db, who, body)


@router.get("/watches", summary="Your watches and your organisation's shared ones")
async def list_watches(request: Request, who: CallerIdentity) -> list[Watch]:
    return await repository.list_watches(state_of(request).db, who)


@router.get("/watches/{watch_id}", summary="One watch")
async def get_watch(request: Request, who: CallerIdentity, watch_id: WatchId) -> Watch:
    return _found(
        await repository.get_watch(state_of(request).db, who, watch_id), WatchNotFound(f"no watch {watch_id}")
    )


@router.patch("/watches/{watch_id}", summary="Change a watch (threshold, conditions, channels, pause)")
async def update_watch(request: Request, who: CallerIdentity, watch_id: WatchId, body: WatchPatch) -> Watch:
    doc = await _own(request, who, watch_id)
    _may_edit(who, doc)
    await _check(request, who, doc["kind"], doc["target"], body.channels)
    return _found(
        await repository.update_watch(state_of(request).db, who, watch_id, body), WatchNotFound(f"no watch {watch_id}")
    )


@router.delete("/watches/{watch_id}", status_code=204, summary="Delete a watch (its alerts stay in the feed)")
async def delete_watch(request: Request, who: CallerIdentity, watch_id: WatchId) -> Response:
    _may_edit(who, await _own(request, who, watch_id))
    await repository.delete_watch(state_of(request).db, who, watch_id)
    return Response(status_code=204)


@router.post("/watches/{watch_id}/test", status_code=202, summary="Send a test alert through the watch's channels")
async def test_watch(request: Request, who: CallerIdentity, watch_id: WatchId) -> WatchAlert:
    doc = await _own(request, who, watch_id)
    model_id = doc["target"] if doc["kind"] == "model" else "hubpulse/test-alert"
    now = datetime.now(UTC)
    alert = alert_doc(
        doc, service.Firing("test", f"test:{uuid.uuid4().hex}"), None, model_id, state_of(request).settings, now
    )
    db = state_of(request).db
    await repository.insert_alert(db, alert)
    deliverer = state_of(request).deliverer
    deliverer.wake.set()
    stored = await repository.get_alert(db, who, alert["_id"])
    assert stored is not None  # just written, visible to its watch's owner
    return stored


def _signed_watch(request: Request, watch_id: WatchId, token: Annotated[str, Query(max_length=200)]) -> str:
    """The watch an unsubscribe link names, once its token is the one signed for it (no sign-in)."""
    # as bytes: compare_digest raises TypeError on non-ASCII str (a 500 the authenticated fuzz test found)
    if not hmac.compare_digest(token.encode(), unsubscribe_token(state_of(request).settings, watch_id).encode()):
        raise BadUnsubscribeToken("this unsubscribe link is not valid")
    return watch_id


SignedWatchId = Annotated[str, Depends(_signed_watch)]

# A GET only asks: mail scanners and previews fetch links, and one that unsubscribed on GET stopped customers' mail
# unseen (RFC 8058). The button POSTs to the same address, as mail clients' one-click unsubscribe does.
_CONFIRM = (
    "<html><body><form method='post'><p>Stop the e-mails of this watch?</p>"
    "<button type='submit'>Stop e-mails</button></form></body></html>"
)


@router.get("/watches/{watch_id}/unsubscribe", summary="The e-mail's unsubscribe link: asks to confirm (signed)")
async def confirm_unsubscribe(request: Request, watch_id: SignedWatchId) -> HTMLResponse:
    if not await repository.watch_exists(state_of(request).db, watch_id):
        raise WatchNotFound(f"no watch {watch_id}")
    return HTMLResponse(_CONFIRM)


@router.post("/watches/{watch_id}/unsubscribe", summary="Stop a watch's e-mails: the link's button, or one-click")
async def unsubscribe(request: Request, watch_id: SignedWatchId) -> HTMLResponse:
    if not await repository.stop_emails(state_of(request).db, watch_id):
        raise WatchNotFound(f"no watch {watch_id}")
    return HTMLResponse("<html><body><p>You will get no more e-mails from this watch.</p></body></html>")


def _cursor(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadCursor("cursor: pass the next_cursor of the previous page") from None


class WatchAlertsQuery(AlertFeedQuery):
    """The gateway's feed query, and what its live alert socket polls with."""

    after: int | None = Field(default=None, ge=0, description="Only alerts with a larger seq, oldest first")


@router.get("/watch-alerts", summary="Your alert feed, newest first (the gateway's /v1/alerts)")
async def alert_feed(request: Request, who: CallerIdentity, query: Annotated[WatchAlertsQuery, Query()]) -> AlertPage:
    items, more, unread_count = await repository.alert_feed(
        state_of(request).db,
        who,
        watch_id=query.watch_id,
        before=_cursor(query.cursor),
        after=query.after,
        unread_only=query.unread,
        limit=query.limit,
    )
    next_cursor = str(items[-1].seq) if more and query.after is None else None
    return AlertPage(items=items, next_cursor=next_cursor, unread=unread_count)


@router.post("/watch-alerts/{alert_id}/ack", summary="Mark an alert read")
async def ack_alert(request: Request, who: CallerIdentity, alert_id: WatchId) -> WatchAlert:
    return _found(await repository.ack(state_of(request).db, who, alert_id), AlertNotFound(f"no alert {alert_id}"))


@router.get("/watch-alerts/{alert_id}/deliveries", summary="Each delivery attempt of an alert")
async def alert_deliveries(request: Request, who: CallerIdentity, alert_id: WatchId) -> list[DeliveryAttempt]:
    db = state_of(request).db
    if await repository.get_alert(db, who, alert_id) is None:
        raise AlertNotFound(f"no alert {alert_id}")
    return [DeliveryAttempt.model_validate(d) for d in await repository.attempts(db, alert_id)]
