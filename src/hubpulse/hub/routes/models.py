"""`GET /api/models`, `GET /api/models/{repo_id}`, `GET /api/trending`, answered the way huggingface.co does."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import numpy as np
import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from hubpulse.hub.responses import clock_of, hub_error, json_response
from hubpulse.hub.snapshot import (
    DEFAULT_FIELDS,
    DETAIL_FIELDS,
    FULL_FIELDS,
    KNOWN_EXPAND,
    SERVED_FIELDS,
    SORT_ALIASES,
    SORTS,
    Query,
    Snapshot,
)

router = APIRouter()
MAX_PAGE = 1000
_TRUE = {"1", "true", "True", "yes"}


class BadRequest(ValueError):
    pass


@dataclass(frozen=True)
class Cursor:
    """Where a walk stands: the day it started on, its sort, the offset (sorted) or last model index (default)."""

    day: int
    sort: str | None
    descending: bool
    offset: int = 0
    after: int = -1

    def encode(self) -> str:
        raw = orjson.dumps({"d": self.day, "s": self.sort, "r": self.descending, "o": self.offset, "a": self.after})
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            data = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            return cls(
                day=int(data["d"]),
                sort=data["s"],
                descending=bool(data["r"]),
                offset=int(data["o"]),
                after=int(data["a"]),
            )
        except (binascii.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise BadRequest("Invalid cursor") from exc


def _multi(request: Request, name: str) -> list[str]:
    """Repeated `name=`/`name[]=` values, each possibly comma-separated."""
    values = request.query_params.getlist(name) + request.query_params.getlist(f"{name}[]")
    return [part for value in values for part in value.split(",") if part]


def _fields(request: Request, default: tuple[str, ...]) -> tuple[str, ...]:
    expand = _multi(request, "expand")
    unknown = sorted(set(expand) - KNOWN_EXPAND)
    if unknown:
        raise BadRequest(f"Invalid expand value(s): {', '.join(unknown)}; allowed: {', '.join(sorted(KNOWN_EXPAND))}")
    if expand:
        return tuple(dict.fromkeys(f for f in expand if f in SERVED_FIELDS))
    if request.query_params.get("full") in _TRUE:
        return FULL_FIELDS
    return default


def _sort(request: Request) -> tuple[str | None, bool]:
    sort = request.query_params.get("sort")
    if sort is not None:
        sort = SORT_ALIASES.get(sort, sort)
        if sort not in SORTS:
            raise BadRequest(f"Invalid sort {sort!r}; allowed: {', '.join(SORTS)}")
    direction = request.query_params.get("direction", "-1")
    if direction not in ("-1", "1"):
        raise BadRequest("direction must be -1 or 1")
    return sort, direction == "-1"


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


def _page(request: Request) -> Response:
    sort, descending = _sort(request)
    fields, limit, query = _fields(request, DEFAULT_FIELDS), _limit(request), _query(request)
    clock = clock_of(request)
    raw_cursor = request.query_params.get("cursor")
    if raw_cursor:
        cursor = Cursor.decode(raw_cursor)
        if (cursor.sort, cursor.descending) != (sort, descending):
            raise BadRequest("Cursor does not belong to this sort")
        snap = clock.snapshot_for(cursor.day)
    else:
        snap = clock.current
        cursor = Cursor(day=snap.day, sort=sort, descending=descending)
    rows = snap.selection(query, sort, descending)
    if sort is None:
        # keyset on model order: a walk stays exact even if it moves on to a newer day
        start = int(np.searchsorted(snap.keyset(query, descending), cursor.after, side="right"))
    else:
        start = cursor.offset
    page = rows[start : start + limit]
    headers: dict[str, str] = {}
    if start + limit < len(rows):
        following = Cursor(
            day=snap.day,
            sort=sort,
            descending=descending,
            offset=start + limit,
            after=int(snap.cols.model_index[page[-1]]),
        )
        next_url = request.url.include_query_params(cursor=following.encode())
        headers["Link"] = f'<{next_url}>; rel="next"'
    headers["X-Total-Count"] = str(len(rows))
    return json_response(snap.render(page, fields), headers=headers)


@router.get("/api/models")
def list_models(request: Request) -> Response:
    try:
        return _page(request)
    except BadRequest as exc:
        return hub_error(400, str(exc))


def _detail(request: Request, repo_id: str) -> Response:
    clock = clock_of(request)
    snap = clock.current
    index = clock.source.index_of(repo_id)
    row = snap.find(index) if index is not None else None
    if row is None:
        return hub_error(404, "Repository not found", "RepoNotFound")
    try:
        fields = _fields(request, DETAIL_FIELDS)
    except BadRequest as exc:
        return hub_error(400, str(exc))
    return json_response(snap.render(np.array([row], dtype=np.int64), fields)[0])


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
    items = [{"repoData": data, "repoType": "model"} for data in snap.render(order, fields)]
    return json_response({"recentlyTrending": items})
