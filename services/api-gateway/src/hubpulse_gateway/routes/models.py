"""Catalog routes: search, model detail, AI picks, and the live picks WebSocket. Thin: parse, call, answer."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import RedirectResponse
from pydantic import TypeAdapter

from hubpulse_common.http import NO_NUL, ApiError, store_not_ready
from hubpulse_common.logging import get_logger
from hubpulse_gateway.catalog import presentation, repository
from hubpulse_gateway.catalog.cache import CACHE_HEADER
from hubpulse_gateway.catalog.live import pick_body
from hubpulse_gateway.catalog.query import normalise_query
from hubpulse_gateway.catalog.schemas import Deployability, ModelDetail, Pick, PicksPage, SearchPage, SortKey
from hubpulse_gateway.deps import CatalogDep, UpstreamsDep, state_of
from hubpulse_gateway.errors import ModelNotFound, error_responses
from hubpulse_gateway.upstream import Upstreams

log = get_logger(__name__)
router = APIRouter(tags=["models"])

INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1
JSON = "application/json"
_PICK = TypeAdapter(Pick)
_PICKS = TypeAdapter(list[Pick])


@router.get(
    "/v1/models",
    response_model=SearchPage,
    summary="Search models: text, filters, sort, cursor pagination",
    responses=error_responses(422),
)
async def search_models(
    request: Request,
    catalog: CatalogDep,
    q: Annotated[
        str | None, Query(max_length=200, pattern=NO_NUL, description="Words matched in id/author and tags")
    ] = None,
    task: Annotated[str | None, Query(max_length=100, pattern=NO_NUL, description="pipeline_tag")] = None,
    library: Annotated[str | None, Query(max_length=100, pattern=NO_NUL, description="library_name")] = None,
    min_downloads: Annotated[int | None, Query(ge=0, le=INT8_MAX)] = None,
    max_downloads: Annotated[int | None, Query(ge=0, le=INT8_MAX)] = None,
    min_likes: Annotated[int | None, Query(ge=0, le=INT4_MAX)] = None,
    sort: SortKey = SortKey.trend,
    cursor: Annotated[str | None, Query(max_length=1000, description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    query = normalise_query(
        q=q,
        task=task,
        library=library,
        min_downloads=min_downloads,
        max_downloads=max_downloads,
        min_likes=min_likes,
        sort=sort,
        cursor=cursor,
        limit=limit,
    )
    body = catalog.cache.get(query)
    hit = body is not None
    if body is None:
        rows = await repository.search(catalog.pool, query, catalog.refresher.sample.plan(query))
        body = presentation.page_json(rows, query)
        # only a fresh answer is stored: storing a hit again would restart its TTL, and a page polled more often
        # than the TTL would never be computed again. An empty catalog (a fresh platform) is not stored at all:
        # the scorer fills it within seconds, and the page should say so then, not a TTL later.
        if rows or query.narrowed:
            catalog.cache.put(request.scope["query_string"], query, body)
    return Response(body, media_type=JSON, headers={CACHE_HEADER.decode(): "hit" if hit else "miss"})


ModelId = Annotated[str, Path(min_length=1, max_length=300, pattern=NO_NUL, description="e.g. org/name")]


# before the detail route, whose {model_id:path} would otherwise take ".../deployability" as part of the id
@router.get(
    "/v1/models/{model_id:path}/deployability",
    response_model=Deployability,
    summary="Whether the deployer can serve the model (Deploy is offered), or why not in a sentence",
    responses=error_responses(422, 503),
)
async def deployability(
    model_id: ModelId,
    upstreams: UpstreamsDep,
    revision: Annotated[str, Query(min_length=1, max_length=100, pattern=NO_NUL)] = "main",
) -> Response:
    params = {"model_id": model_id, "revision": revision}
    body = await upstreams.deployer.json("GET", "/deployability", params=params)
    return Response(Deployability.model_validate(body).model_dump_json(), media_type=JSON)


@router.get(
    "/v1/models/{model_id:path}",
    response_model=ModelDetail,
    summary="One model: latest stats, daily history, features, probability history, explanation",
    responses={
        **error_responses(404, 422),
        307: {"description": "A renamed model: Location is its detail under its new name"},
    },
)
async def model_detail(request: Request, catalog: CatalogDep, upstreams: UpstreamsDep, model_id: ModelId) -> Response:
    pool = catalog.pool
    row, history, new_id = await asyncio.gather(
        repository.model(pool, model_id), repository.daily(pool, model_id), repository.renamed_to(pool, model_id)
    )
    if new_id is not None:  # the Hub renamed it: its history continues under the new name (the old row is stale)
        return RedirectResponse(request.url.replace(path=f"/v1/models/{new_id}"), status_code=307)
    if row is None:
        raise ModelNotFound(f"no model {model_id!r} in the catalog")
    detail = dict(row)
    if detail["explanation"] is None:  # not explained when scored (no pick, not the top of a sort): the scorer does
        detail["explanation"] = await _explanation_on_demand(upstreams, model_id)
    features = presentation.finite_features(detail["features"] or {})
    detail["features"] = features
    detail["history"] = [dict(r) for r in history]
    detail["is_pick"] = presentation.is_pick(detail["probability"], detail["threshold"])
    detail["hype_score"] = presentation.hype_score(detail["probability"], detail["likes"], features.get("likes_7d"))
    detail["hub_url"] = f"{catalog.hub_url.rstrip('/')}/{model_id}"
    return Response(ModelDetail.model_validate(detail).model_dump_json(), media_type=JSON)


async def _explanation_on_demand(upstreams: Upstreams, model_id: str) -> list[Any]:
    """The scorer's explanation of the model's latest score (computed once, then kept in the row); without one
    (the scorer unreachable, the row replaced meanwhile) the page shows its stats and says it has no explanation."""
    try:
        body = await upstreams.scorer.json("GET", "/explanation", params={"model_id": model_id})
    except ApiError as exc:
        log.warning("catalog.explanation_unavailable", model_id=model_id, status=exc.status, error=exc.message)
        return []
    explanation: list[Any] = body["explanation"]
    return explanation


@router.get(
    "/v1/picks",
    response_model=PicksPage,
    summary="AI picks: models above a trend probability",
    responses=error_responses(422),
)
async def picks(
    catalog: CatalogDep,
    threshold: Annotated[float, Query(ge=0.0, le=1.0)] = 0.45,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    rows = await repository.picks(catalog.pool, threshold, limit)
    page = PicksPage.model_validate({"threshold": threshold, "items": [pick_body(r) for r in rows]})
    return Response(page.model_dump_json(), media_type=JSON)


@router.websocket("/v1/live/picks")
async def live_picks(websocket: WebSocket) -> None:
    """Sends `{"type": "snapshot", "items": [...]}` once, then `{"type": "pick", "item": {...}}` per new pick."""
    try:
        threshold = float(websocket.query_params.get("threshold", "0.45"))
    except ValueError:
        threshold = -1.0
    await websocket.accept()
    if not 0.0 <= threshold <= 1.0:
        await websocket.send_json({"error": {"code": "validation_error", "message": "threshold: a number in [0, 1]"}})
        await websocket.close(code=1008)
        return
    state = state_of(websocket).catalog
    try:
        rows = await repository.picks(state.pool, threshold, 20)
    except Exception as exc:
        if not store_not_ready(exc):
            raise
        # 1013 "try again later": the ticker reconnects with backoff until the scorer has made the catalog
        await websocket.send_json({"error": {"code": "unavailable", "message": "the catalog is not ready yet"}})
        await websocket.close(code=1013)
        return
    snapshot = _PICKS.validate_python([pick_body(r) for r in rows])
    await websocket.send_text(f'{{"type":"snapshot","items":{_PICKS.dump_json(snapshot).decode()}}}')
    sub = state.feed.subscribe(threshold)
    receiver = asyncio.create_task(_drain_client(websocket))
    try:
        while not receiver.done():
            getter = asyncio.create_task(sub.queue.get())
            done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            item = _PICK.validate_python(getter.result())
            await websocket.send_text(f'{{"type":"pick","item":{_PICK.dump_json(item).decode()}}}')
    except WebSocketDisconnect:
        pass
    finally:
        state.feed.unsubscribe(sub)
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
            await receiver


async def _drain_client(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, so a disconnect is noticed at once."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.receive_text()
