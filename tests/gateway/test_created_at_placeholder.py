"""The Hub's creation-date placeholder (2022-03-02T23:29:04Z, "created before March 2022") is served as null."""

from __future__ import annotations

import datetime as dt

import orjson

from hubpulse_gateway.catalog.presentation import page_json
from hubpulse_gateway.catalog.query import SearchQuery, decode_cursor
from hubpulse_gateway.catalog.schemas import ModelSummary, SortKey

PLACEHOLDER = dt.datetime(2022, 3, 2, 23, 29, 4, tzinfo=dt.UTC)
KNOWN = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)


def _row(model_id: str, created: dt.datetime) -> dict[str, object]:
    return {
        "model_id": model_id,
        "author": "a",
        "pipeline_tag": None,
        "library_name": None,
        "tags": [],
        "created_at": created,
        "snapshot_date": dt.date(2026, 1, 1),
        "downloads": 1,
        "likes": 0,
        "trending_rank": None,
        "growth_7d": None,
        "probability": None,
    }


def test_search_pages_and_details_give_null_for_the_placeholder_and_the_cursor_keeps_walking() -> None:
    query = SearchQuery((), None, None, None, None, None, SortKey.created, None, 2)
    rows = [_row("a/new", KNOWN), _row("a/old", PLACEHOLDER), _row("a/older", PLACEHOLDER)]
    page = orjson.loads(page_json(rows, query))
    assert [i["created_at"] for i in page["items"]] == ["2024-05-06T07:08:09Z", None]
    # the cursor still holds the stored value, so the created sort continues after the last row
    assert decode_cursor(page["next_cursor"], SortKey.created).value == PLACEHOLDER
    assert ModelSummary.model_validate(_row("a/old", PLACEHOLDER)).created_at is None
    assert ModelSummary.model_validate(_row("a/new", KNOWN)).created_at == KNOWN
