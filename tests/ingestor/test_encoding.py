"""The bulk path's event bytes: built with orjson, they must be what the pydantic path would publish."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import httpx

from hubpulse_common.events import SNAPSHOTS_BATCH_BYTES, SNAPSHOTS_BATCH_ROWS, ModelSnapshot, ModelSnapshotBatch
from hubpulse_common.kafka import EventBus
from hubpulse_ingestor import repository
from hubpulse_ingestor.cycle import SnapshotSink
from hubpulse_ingestor.hub import EXPAND
from hubpulse_ingestor.snapshots import (
    COLUMNS,
    MAX_ROW_TEXT,
    encode_page,
    encode_rows,
    rows_from_page,
    snapshot_messages,
    snapshot_values,
    to_events,
    with_renames,
)

from .conftest import Replay, SnapshotTap

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


def _v2_rows(messages: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    rows = [e for _, v in messages for e in ModelSnapshotBatch.model_validate_json(v).as_v1()]
    return sorted((_comparable(e) for e in rows), key=lambda e: e["model_id"])


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
    assert [_comparable(ModelSnapshot.model_validate_json(v)) for v in snapshot_values(encoded)] == expected
    # hub.snapshots.v2: the same rows, whatever the partitions
    for partitions in (1, 4):
        assert _v2_rows(snapshot_messages(encoded, partitions)) == sorted(expected, key=lambda e: e["model_id"])
    # the same through encode_rows (the `hubpulse import` path)
    again = encode_rows(rows_from_page(items, day))
    assert [_comparable(ModelSnapshot.model_validate_json(v)) for v in snapshot_values(again)] == expected
    assert encode_page([], day).encoded.days == set()


def test_renames_ride_on_both_versions() -> None:
    encoded = encode_page([{"id": f"a/m{i}", "downloads": i} for i in range(50)], dt.date(2026, 3, 4)).encoded
    with_renames(encoded, {"a/m7": "a/old7", "a/m30": "a/old30"})
    v1 = {e.model_id: e.renamed_from for e in map(ModelSnapshot.model_validate_json, snapshot_values(encoded))}
    assert {k: v for k, v in v1.items() if v} == {"a/m7": "a/old7", "a/m30": "a/old30"}
    assert {e["model_id"]: e["renamed_from"] for e in _v2_rows(snapshot_messages(encoded, 4))} == v1


def test_text_too_long_or_not_utf8_is_rejected_alone() -> None:
    items = [
        {"id": "a/long", "tags": ["x" * 1000] * (MAX_ROW_TEXT // 1000 + 1)},
        {"id": "a/surrogate", "author": "\ud800"},
        {"id": "a/surrogate-tag", "tags": ["ok", "\udfff"]},
        {"id": "a/fine", "tags": ["x" * 1000] * (MAX_ROW_TEXT // 1000 - 1)},
    ]
    outcome = encode_page(items, dt.date(2026, 3, 4))
    assert [k.decode() for k in outcome.encoded.keys] == ["a/fine"]
    assert outcome.skipped == {"too_large": 1, "unencodable": 2}


def test_the_largest_page_splits_under_the_message_limit() -> None:
    """A full page (1,000 models, the Hub's largest) of the longest rows the checks let through."""
    tags = ["t" * 999] * (MAX_ROW_TEXT // 1000 - 1)
    items = [{"id": f"{i:03d}/" + "m" * 290, "downloads": i, "tags": tags} for i in range(1000)]
    encoded = encode_page(items, dt.date(2026, 3, 4)).encoded
    assert len(encoded) == 1000
    messages = snapshot_messages(encoded, 4)
    assert max(len(v) for _, v in messages) <= SNAPSHOTS_BATCH_BYTES
    assert len(messages) > 100  # ~150 KB a row: a message of a few rows each
    assert [e["model_id"] for e in _v2_rows(messages)] == sorted(i["id"] for i in items)
    # small rows: SNAPSHOTS_BATCH_ROWS a message
    small = encode_page([{"id": f"s/{i}"} for i in range(5000)], dt.date(2026, 3, 4)).encoded
    sizes = [ModelSnapshotBatch.model_validate_json(v).rows for _, v in snapshot_messages(small, 1)]
    assert sizes == [SNAPSHOTS_BATCH_ROWS] * (5000 // SNAPSHOTS_BATCH_ROWS)


async def test_the_largest_page_goes_through_the_broker(
    stores: tuple[asyncpg.Pool, EventBus], tap: SnapshotTap
) -> None:
    """The broker and aiokafka take every message of the largest page (published as a batch is), rows intact."""
    pool, bus = stores
    tags = ["t" * 999] * (MAX_ROW_TEXT // 1000 - 1)
    items = [{"id": f"big{i:03d}/" + "m" * 290, "downloads": i, "tags": tags} for i in range(1000)]
    encoded = encode_page(items, dt.date(2026, 3, 6)).encoded
    assert await SnapshotSink(pool, bus, "hub").write_encoded(encoded) == []
    rows = await tap.rows()
    assert sorted(k.decode() for k, _ in rows) == sorted(i["id"] for i in items)
    assert all(e.tags == tags for _, e in rows)


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
