"""Search, detail and picks logic on plain data: query normalisation, opaque cursors, the hype score."""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from hubpulse_gateway.catalog.schemas import SortKey

MAX_TERMS = 5

# The catalog column each sort orders by (descending, nulls last, model id as tie-breaker).
SORT_COLUMNS: dict[SortKey, str] = {
    SortKey.trend: "probability",
    SortKey.downloads: "downloads",
    SortKey.likes: "likes",
    SortKey.growth: "growth_7d",
    SortKey.created: "created_at",
}
NULLABLE_SORTS = frozenset({SortKey.trend, SortKey.growth, SortKey.created})

CursorValue = float | int | datetime | None


class BadQuery(ValueError):
    """A query the client must fix; `code` goes into the JSON error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Cursor:
    value: CursorValue
    model_id: str


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A normalised search: equal queries are equal values, so this is also the cache key."""

    terms: tuple[str, ...]
    task: str | None
    library: str | None
    min_downloads: int | None
    max_downloads: int | None
    min_likes: int | None
    sort: SortKey
    cursor: Cursor | None
    limit: int


def _clean(value: str | None) -> str | None:
    value = (value or "").strip().lower()
    return value or None


def normalise_query(
    *,
    q: str | None,
    task: str | None,
    library: str | None,
    min_downloads: int | None,
    max_downloads: int | None,
    min_likes: int | None,
    sort: SortKey,
    cursor: str | None,
    limit: int,
) -> SearchQuery:
    terms = tuple(dict.fromkeys((q or "").lower().split()))  # dedupe, keep order
    if len(terms) > MAX_TERMS:
        raise BadQuery("too_many_terms", f"q: at most {MAX_TERMS} words")
    if min_downloads is not None and max_downloads is not None and min_downloads > max_downloads:
        raise BadQuery("bad_range", "min_downloads must not exceed max_downloads")
    return SearchQuery(
        terms=terms,
        task=_clean(task),
        library=_clean(library),
        min_downloads=min_downloads,
        max_downloads=max_downloads,
        min_likes=min_likes,
        sort=sort,
        cursor=decode_cursor(cursor, sort) if cursor else None,
        limit=limit,
    )


def like_pattern(term: str) -> str:
    """`%term%` with LIKE's wildcards escaped, so a user's `_` or `%` matches itself."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode_cursor(sort: SortKey, value: CursorValue, model_id: str) -> str:
    raw = value.isoformat() if isinstance(value, datetime) else value
    return _b64(orjson.dumps([sort.value, raw, model_id]))


def decode_cursor(token: str, sort: SortKey) -> Cursor:
    """Parse a cursor from `encode_cursor`; anything else (or one from another sort) is a `BadQuery`."""
    bad = BadQuery("invalid_cursor", "cursor: not a cursor from this search (start again without it)")
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise bad from None
    if not (isinstance(data, list) and len(data) == 3 and data[0] == sort.value and isinstance(data[2], str)):
        raise bad
    raw = data[1]
    value: CursorValue
    if raw is None:
        if sort not in NULLABLE_SORTS:
            raise bad
        value = None
    elif sort in (SortKey.downloads, SortKey.likes):
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise bad
        value = raw
    elif sort is SortKey.created:
        try:
            value = datetime.fromisoformat(raw) if isinstance(raw, str) else None
        except ValueError:
            raise bad from None
        if value is None or value.tzinfo is None:
            raise bad
    else:
        if not isinstance(raw, int | float) or isinstance(raw, bool) or not math.isfinite(raw):
            raise bad
        value = float(raw)
    return Cursor(value, data[2])


def page_of(rows: Sequence[Mapping[str, Any]], query: SearchQuery) -> dict[str, Any]:
    """The page body from up to `limit + 1` rows: the extra row only says that there is a next page."""
    items = [dict(r) for r in rows[: query.limit]]
    next_cursor = None
    if len(rows) > query.limit:
        last = items[-1]
        next_cursor = encode_cursor(query.sort, last[SORT_COLUMNS[query.sort]], last["model_id"])
    return {"items": items, "next_cursor": next_cursor}


def hype_score(probability: float | None, likes: int, likes_7d: float | None) -> float | None:
    """0-100: high only when the model expects a trend *and* the attention is recent.

    The geometric mean of the trend probability and the share of all likes earned in the last 7 days;
    without a probability it is just that share. None when neither is known.
    """
    share = None
    if likes_7d is not None and math.isfinite(likes_7d) and likes > 0:
        share = min(1.0, max(0.0, likes_7d / likes))
    if probability is None:
        return None if share is None else round(100 * share, 1)
    return round(100 * math.sqrt(probability * (share or 0.0)), 1)


def is_pick(probability: float | None, threshold: float | None) -> bool:
    return probability is not None and threshold is not None and probability >= threshold


def finite_features(features: Mapping[str, Any]) -> dict[str, float | None]:
    """Features as JSON-safe numbers: NaN and infinities (missing values upstream) become null."""
    out: dict[str, float | None] = {}
    for name, value in features.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
        else:
            out[name] = None
    return out
