"""`GET /api/models`, `GET /api/models/{repo_id}`, `GET /api/trending`, answered the way huggingface.co does."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from hubpulse.hub.clock import ReplayClock
from hubpulse.hub.responses import clock_of, hub_error, json_response, live_of
from hubpulse.hub.snapshot import (
    DEFAULT_FIELDS,
    DETAIL_FIELDS,
    DETAIL_ONLY_EXPAND,
    FULL_FIELDS,
    I64,
    KNOWN_EXPAND,
    SERVED_FIELDS,
    SORTS,
    Query,
    Snapshot,
    object_id_seconds,
)

router = APIRouter()
MAX_PAGE = 1000
DEFAULT_SORT = "trendingScore"  # huggingface.co's order when no sort is given
_TRUE = {"1", "true", "True", "yes"}


class BadRequest(ValueError):
    pass


# Every parameter huggingface_hub's list_models sends (hf_api.py); anything else is refused, not ignored.
LIST_PARAMS = frozenset(
    {
        "search",
        "author",
        "filter",
        "apps",
        "gated",
        "inference",
        "inference_provider",
        "pipeline_tag",
        "num_parameters",
        "sort",
        "direction",
        "limit",
        "full",
        "config",
        "cardData",
        "expand",
        "cursor",
        "library",
        "language",
        "model_name",
        "trained_dataset",
    }
)


@dataclass(frozen=True)
class Cursor:
    """huggingface.co's own cursor: base64 JSON of the keyset filter that follows the last item, e.g.
    {"$or":[{"downloads":2,"_id":{"$gt":"6390..."}},{"downloads":{"$lt":2}},{"downloads":null}]}
    (huggingface_hub issue #2460). It holds values, not positions: the next page is read from live data."""

    sort: str
    value: float | None
    object_id: str

    def encode(self) -> str:
        after = {"_id": {"$gt": self.object_id}}
        if self.value is None:
            data: dict[str, object] = {self.sort: None, **after}
        else:
            value = int(self.value) if float(self.value).is_integer() else self.value
            data = {"$or": [{self.sort: value, **after}, {self.sort: {"$lt": value}}, {self.sort: None}]}
        return base64.b64encode(orjson.dumps(data)).decode()

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            data = orjson.loads(base64.b64decode(text + "=" * (-len(text) % 4), validate=True))
            first = data["$or"][0] if "$or" in data else data
            (sort,) = (k for k in first if k != "_id")
            value = first[sort]
            object_id = str(first["_id"]["$gt"])
            int(object_id, 16)
            if value is not None and not isinstance(value, int | float):
                raise TypeError(value)
            return cls(sort=sort, value=None if value is None else float(value), object_id=object_id)
        except (binascii.Error, orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise BadRequest("Invalid cursor") from exc


def _multi(request: Request, name: str) -> list[str]:
    """Repeated `name=`/`name[]=` values, each possibly comma-separated."""
    values = request.query_params.getlist(name) + request.query_params.getlist(f"{name}[]")
    return [part for value in values for part in value.split(",") if part]


def _fields(request: Request, default: tuple[str, ...], listing: bool) -> tuple[str, ...]:
    expand = _multi(request, "expand")
    unknown = sorted(set(expand) - KNOWN_EXPAND)
    if unknown:
        raise BadRequest(f"Invalid expand value(s): {', '.join(unknown)}; allowed: {', '.join(sorted(KNOWN_EXPAND))}")
    refused = sorted(set(expand) & DETAIL_ONLY_EXPAND) if listing else []
    if refused:
        raise BadRequest(f"Invalid expand value(s) when listing models: {', '.join(refused)}")
    if expand:
        return tuple(dict.fromkeys(f for f in expand if f in SERVED_FIELDS))
    if request.query_params.get("full") in _TRUE:
        return FULL_FIELDS
    return default


def _check_params(request: Request) -> None:
    unknown = sorted({k.removesuffix("[]") for k in request.query_params} - LIST_PARAMS)
    if unknown:
        raise BadRequest(f"Invalid query parameter(s): {', '.join(unknown)}")


def _sort(request: Request) -> str:
    """The sort (trendingScore when none is given). `direction` is accepted and has no effect: huggingface.co
    sorts descending only (huggingface_hub PR #3882 removed the argument for that reason)."""
    sort = request.query_params.get("sort") or DEFAULT_SORT
    if sort not in SORTS:
        raise BadRequest(f"Invalid sort {sort!r}; allowed: {', '.join(SORTS)}")
    if request.query_params.get("direction", "-1") not in ("-1", "1"):
        raise BadRequest("direction must be -1 or 1")
    return sort


def _limit(request: Request) -> int:
    page_size: int = getattr(request.app.state, "page_size", MAX_PAGE)
    raw = request.query_params.get("limit")
    if raw is None:
        return page_size
    try:
        limit = int(raw)
    except ValueError as exc:
        raise BadRequest("limit must be an integer") from exc
    if limit < 1:
        raise BadRequest("limit must be positive")
    return min(limit, page_size)


def _query(request: Request) -> Query:
    p = request.query_params
    return Query(
        search=p.get("search") or None,
        author=p.get("author") or None,
        filters=tuple(_multi(request, "filter")),
        pipeline_tag=p.get("pipeline_tag") or None,
    )


@dataclass(frozen=True)
class _Order:
    """One query's rows in serving order over the live values (known values descending, then unknown ones; ties
    by ObjectId), with what a cursor is searched in: negated known values (ascending) and ObjectId keys."""

    rows: I64
    values: npt.NDArray[np.float64]
    oid_keys: I64
    negated: npt.NDArray[np.float64]  # -values of rows[:known], the rows that have a value


def _oid_key(seconds: I64, index: I64) -> I64:
    key: I64 = (seconds.astype(np.int64) << 24) | index  # ObjectIds order by second, then by counter
    return key


def _rows_of(clock: ReplayClock, snap: Snapshot, model_ids: Iterable[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for model_id in model_ids:
        index = clock.source.index_of(model_id)
        row = snap.find(index) if index is not None else None
        if row is not None:
            found[model_id] = row
    return found


def _live_order(request: Request, snap: Snapshot, query: Query, sort: str, user: str | None) -> _Order:
    clock, live = clock_of(request), live_of(request)
    private = frozenset(live.config.private)

    def build() -> _Order:
        rows = snap.selection(query, None, False)
        key = snap.sort_key(sort).astype(np.float64, copy=True)
        if sort == "trendingScore":
            scores = live.scores()
            for model_id, row in _rows_of(clock, snap, scores).items():
                key[row] = scores[model_id]
        hidden = [row for model_id, row in _rows_of(clock, snap, private).items() if not live.visible(model_id, user)]
        if hidden:
            rows = rows[~np.isin(rows, np.array(hidden, dtype=np.int64))]
        values = key[rows]
        oid = _oid_key(object_id_seconds(snap.cols, rows), snap.cols.model_index[rows])
        order = np.lexsort((oid, -np.nan_to_num(values, nan=0.0), np.isnan(values)))  # nulls last
        values = values[order]
        negated = -values[: int(np.count_nonzero(~np.isnan(values)))]
        return _Order(rows=rows[order], values=values, oid_keys=oid[order], negated=negated)

    return snap.memo(("live", query, sort, live.version, user, private), build)


def _start(order: _Order, cursor: Cursor) -> int:
    """First position after the cursor's (value, _id), compared with the values as they are now (two binary
    searches: a walk of 2M models costs no scan per page)."""
    seconds, index = int(cursor.object_id[:8], 16), int(cursor.object_id[8:], 16)
    after = (seconds << 24) | index
    if cursor.value is None:
        lo, hi = len(order.negated), len(order.rows)
    else:
        negated = order.negated
        lo = int(np.searchsorted(negated, -cursor.value, side="left"))
        hi = int(np.searchsorted(negated, -cursor.value, side="right"))
    return lo + int(np.searchsorted(order.oid_keys[lo:hi], after, side="right"))


def _render(request: Request, snap: Snapshot, rows: I64, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """The day's rows as served now: live scores, new names for renamed repos, `private` for private ones."""
    live = live_of(request)
    items = snap.render(rows, fields)
    scores, private = live.scores(), set(live.config.private)
    for item in items:
        original = item["id"]
        if "trendingScore" in item and original in scores:
            item["trendingScore"] = scores[original]
        if "private" in item:
            item["private"] = original in private
        renamed = live.new_name(original)
        if renamed is not None:
            item["id"] = item["modelId"] = renamed
    return items


def _page(request: Request) -> Response:
    _check_params(request)
    sort = _sort(request)
    fields, limit, query = _fields(request, DEFAULT_FIELDS, listing=True), _limit(request), _query(request)
    live = live_of(request)
    live.count_list_request()
    user, _ = live.caller(request.headers.get("authorization", ""))
    snap = clock_of(request).current
    order = _live_order(request, snap, query, sort, user)
    raw_cursor = request.query_params.get("cursor")
    start = 0
    if raw_cursor:
        cursor = Cursor.decode(raw_cursor)
        if cursor.sort != sort:
            raise BadRequest("Cursor does not belong to this sort")
        start = _start(order, cursor)
    end = min(start + limit, len(order.rows))
    headers: dict[str, str] = {}
    if end < len(order.rows):
        last = end - 1
        value = float(order.values[last])
        object_id = snap.render(order.rows[last : last + 1], ())[0]["_id"]
        following = Cursor(sort=sort, value=None if value != value else value, object_id=object_id)
        next_url = request.url.include_query_params(cursor=following.encode())
        headers["Link"] = f'<{next_url}>; rel="next"'
    headers["X-Total-Count"] = str(len(order.rows))
    items = _render(request, snap, order.rows[start:end], fields)
    if "Link" not in headers:
        items.extend(live.config.extra_items)
    return json_response(items, headers=headers)


@router.get("/api/models")
def list_models(request: Request) -> Response:
    try:
        return _page(request)
    except BadRequest as exc:
        return hub_error(400, str(exc))


def _detail(request: Request, repo_id: str) -> Response:
    clock, live = clock_of(request), live_of(request)
    renamed = live.new_name(repo_id)
    if renamed is not None:  # huggingface.co answers an old name with a redirect to the new one
        # relative, as huggingface.co sends it for renamed repos (huggingface_hub PR #983 relies on that)
        query = f"?{request.url.query}" if request.url.query else ""
        return Response(status_code=307, headers={"Location": f"/api/models/{renamed}{query}"})
    original = live.original_name(repo_id)
    snap = clock.current
    index = clock.source.index_of(original) if original == repo_id or live.new_name(original) == repo_id else None
    row = snap.find(index) if index is not None else None
    user, _ = live.caller(request.headers.get("authorization", ""))
    if row is None or not live.visible(original, user):
        return hub_error(404, "Repository not found", "RepoNotFound")
    try:
        fields = _fields(request, DETAIL_FIELDS, listing=False)
    except BadRequest as exc:
        return hub_error(400, str(exc))
    return json_response(_render(request, snap, np.array([row], dtype=np.int64), fields)[0])


@router.get("/api/models/{namespace}/{name}")
def model_info(request: Request, namespace: str, name: str) -> Response:
    return _detail(request, f"{namespace}/{name}")


@router.get("/api/models/{name}")
def model_info_legacy(request: Request, name: str) -> Response:
    """Ids without an author (`gpt2`), as the Hub still serves them."""
    return _detail(request, name)


@router.get("/api/trending")
def trending(request: Request) -> Response:
    kind = request.query_params.get("type", "model")
    try:
        limit = min(int(request.query_params.get("limit", "20")), 100)
    except ValueError:
        return hub_error(400, "limit must be an integer")
    if kind not in ("model", "all") or limit < 1:
        return json_response({"recentlyTrending": []})
    snap: Snapshot = clock_of(request).current
    order = snap.order("trendingScore", descending=True)[:limit]
    fields = (
        "author",
        "downloads",
        "likes",
        "trendingScore",
        "pipeline_tag",
        "library_name",
        "lastModified",
        "private",
        "gated",
    )
    private = set(live_of(request).config.private)  # a public list: nobody's private repos
    items = [
        {"repoData": data, "repoType": "model"} for data in snap.render(order, fields) if data["id"] not in private
    ]
    return json_response({"recentlyTrending": items})
