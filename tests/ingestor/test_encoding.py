"""The bulk path's event bytes: built with orjson, they must be what the pydantic path would publish."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import httpx

from hubpulse_common.events import ModelSnapshot
from hubpulse_common.kafka import EventBus
from hubpulse_ingestor import repository
from hubpulse_ingestor.hub import EXPAND
from hubpulse_ingestor.snapshots import COLUMNS, encode_page, encode_rows, rows_from_page, to_events

from .conftest import Replay

ODD_ITEMS: list[dict[str, Any]] = [
    {"id": "solo"},
    {"id": "a/neg", "downloads": -3, "likes": 2.5, "downloadsAllTime": "12", "trendingScore": True},
    {"id": "a/tags", "tags": ["x", 3, None, "y"], "author": "", "pipeline_tag": "", "library_name": 7},
    {"id": "a/times", "createdAt": "nonsense", "lastModified": "2024-01-01T00:00:00"},
    {"id": "a/zone", "createdAt": "2024-02-03T04:05:06.789+02:00", "lastModified": "2024-02-03T04:05:06Z"},
    {"id": "ünï/😀", "downloads": 10**15, "likes": 0, "trendingScore": 1.5e300, "tags": None},
]


def _page(replay: Replay) -> list[dict[str, Any]]:
    params = [("limit", 100), *(("expand", e) for e in EXPAND)]
    items: list[dict[str, Any]] = httpx.get(f"{replay.url}/api/models", params=params, timeout=30).json()
    return items


def _comparable(event: ModelSnapshot) -> dict[str, Any]:
    return event.model_dump(exclude={"occurred_at"})


def test_encoded_page_validates_as_the_pydantic_events(replay: Replay) -> None:
    items = [*_page(replay), *ODD_ITEMS]
    day = dt.date(2026, 3, 4)
    outcome = encode_page(items, day)
    encoded = outcome.encoded
    assert (outcome.listed, outcome.skipped, outcome.cleaned) == (len(items), {}, {})
    assert len(encoded) == len(items)
    assert encoded.days == {day}
    assert encoded.keys == [i["id"].encode() for i in items]
    expected = [_comparable(e) for e in to_events(rows_from_page(items, day))]
    assert [_comparable(ModelSnapshot.model_validate_json(v)) for v in encoded.values] == expected
    # the same bytes through encode_rows (the `hubpulse import` path)
    again = encode_rows(rows_from_page(items, day))
    assert [_comparable(ModelSnapshot.model_validate_json(v)) for v in again.values] == expected
    assert encode_page([], day).encoded.days == set()


async def test_upsert_encoded_stores_what_copy_stores(replay: Replay, stores: tuple[asyncpg.Pool, EventBus]) -> None:
    """The JSON-array upsert writes the same rows as the COPY-to-staging upsert, idempotently, odd values included."""
    pool, _ = stores
    items = [*_page(replay), *ODD_ITEMS]
    copy_day, json_day = dt.date(2026, 3, 4), dt.date(2026, 3, 5)
    await repository.upsert_snapshots(pool, rows_from_page(items, copy_day))
    for _ in range(2):  # a redelivered batch overwrites
        await repository.upsert_encoded(pool, encode_page(items, json_day).encoded)
    columns = ", ".join(c for c in COLUMNS if c != "snapshot_date")
    query = f"SELECT {columns} FROM snapshots WHERE snapshot_date = $1 ORDER BY model_id"  # noqa: S608
    by_copy = [dict(r) for r in await pool.fetch(query, copy_day)]
    by_json = [dict(r) for r in await pool.fetch(query, json_day)]
    assert len(by_json) == len(items)
    assert by_json == by_copy
