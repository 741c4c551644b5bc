"""What the API shows of catalog rows: the page body and its JSON, the hype score, picks, JSON-safe features."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from hubpulse_common.history import known_created_at
from hubpulse_gateway.catalog.query import SORT_COLUMNS, SearchQuery, encode_cursor


def page_of(rows: Sequence[Mapping[str, Any]], query: SearchQuery) -> dict[str, Any]:
    """The page body from up to `limit + 1` rows: the extra row only says that there is a next page."""
    items = [dict(r) for r in rows[: query.limit]]
    next_cursor = None
    if len(rows) > query.limit:
        last = items[-1]
        next_cursor = encode_cursor(query.sort, last[SORT_COLUMNS[query.sort]], last["model_id"])
    for item in items:  # after the cursor, which needs the stored value to continue the walk
        item["created_at"] = known_created_at(item["created_at"])
    return {"items": items, "next_cursor": next_cursor}


def page_json(rows: Sequence[Mapping[str, Any]], query: SearchQuery) -> bytes:
    """The `SearchPage` JSON straight from the rows: they already have its types, so no pydantic round trip
    (it cost as much as the query on a warm index). Z for UTC, as pydantic writes it."""
    return orjson.dumps(page_of(rows, query), option=orjson.OPT_UTC_Z)


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
