"""A search as a value: query normalisation, the opaque cursor codec, LIKE patterns. Plain data, no I/O."""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from datetime import datetime

import orjson

from hubpulse_common.catalog_keys import SORT_KEYS as CATALOG_SORT_KEYS
from hubpulse_common.http import sane_datetime
from hubpulse_gateway.catalog.schemas import SortKey

MAX_TERMS = 5

# The catalog column each sort orders by (descending, nulls last, model id as tie-breaker).
SORT_COLUMNS: dict[SortKey, str] = {sort: CATALOG_SORT_KEYS[sort.value].column for sort in SortKey}
NULLABLE_SORTS = frozenset(sort for sort in SortKey if CATALOG_SORT_KEYS[sort.value].null is not None)

CursorValue = float | int | datetime | None


class BadQuery(ValueError):
    """A query the client must fix (the gateway's errors.py maps each kind to its 422 code)."""


class TooManyTerms(BadQuery):
    pass


class ReversedRange(BadQuery):
    pass


class InvalidCursor(BadQuery):
    pass


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

    @property
    def narrowed(self) -> bool:
        """Whether anything but the order and the page size narrows it (an unnarrowed one lists the catalog)."""
        bounds = (self.min_downloads, self.max_downloads, self.min_likes, self.cursor)
        return bool(self.terms or self.task or self.library) or any(b is not None for b in bounds)


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
        raise TooManyTerms(f"q: at most {MAX_TERMS} words")
    if min_downloads is not None and max_downloads is not None and min_downloads > max_downloads:
        raise ReversedRange("min_downloads must not exceed max_downloads")
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
    bad = InvalidCursor("cursor: not a cursor from this search (start again without it)")
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise bad from None
    if not (isinstance(data, list) and len(data) == 3 and data[0] == sort.value and isinstance(data[2], str)):
        raise bad
    if "\x00" in data[2]:  # PostgreSQL text cannot hold NUL
        raise bad
    raw = data[1]
    value: CursorValue
    if raw is None:
        if sort not in NULLABLE_SORTS:
            raise bad
        value = None
    elif sort in (SortKey.downloads, SortKey.likes):
        # the column's own range (likes: integer, downloads: bigint), so a forged value is a 422, not a 500
        bits = 31 if sort is SortKey.likes else 63
        if not isinstance(raw, int) or isinstance(raw, bool) or not -(2**bits) <= raw < 2**bits:
            raise bad
        value = raw
    elif sort is SortKey.created:
        try:
            value = datetime.fromisoformat(raw) if isinstance(raw, str) else None
        except ValueError:
            raise bad from None
        if value is None or value.tzinfo is None:
            raise bad
        try:
            value = sane_datetime(value)  # near year 1 or 9999, asyncpg overflows converting it to UTC
        except ValueError:
            raise bad from None
    else:
        if not isinstance(raw, int | float) or isinstance(raw, bool) or not math.isfinite(raw):
            raise bad
        value = float(raw)
    return Cursor(value, data[2])


def has_filters(query: SearchQuery) -> bool:
    return any(
        v is not None for v in (query.task, query.library, query.min_downloads, query.max_downloads, query.min_likes)
    )
