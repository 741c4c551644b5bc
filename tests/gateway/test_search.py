"""Search, detail and picks through a real gateway process over a seeded PostgreSQL catalog."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import math
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import websockets

from gateway.gateway_process import EXPLAINED_ID, UNSCORED_IDS, Gateway

SORT_COLUMNS = {
    "trend": "probability",
    "downloads": "downloads",
    "likes": "likes",
    "growth": "growth_7d",
    "created": "created_at",
}


async def get(gw: Gateway, path: str, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
        return await client.get(path, params=params)


async def all_pages(gw: Gateway, limit: int, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
        for _ in range(1000):
            query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/v1/models", params=query)).raise_for_status().json()
            assert len(page["items"]) <= limit
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return items
    raise AssertionError("pagination did not end")


async def db_rows(gw: Gateway, where: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(gw.database_url)
    try:
        return await conn.fetch(f"SELECT * FROM catalog_models WHERE {where}", *args)  # noqa: S608 - test-only SQL
    finally:
        await conn.close()


def order_key(sort: str):
    """Python's reading of the documented order: the sort column descending, nulls last, then id ascending."""
    column = SORT_COLUMNS[sort]

    def key(row: Any) -> tuple[Any, ...]:
        value = row[column]
        if value is None:
            return (1, 0, row["model_id"])
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value).timestamp()
        elif isinstance(value, dt.datetime):
            value = value.timestamp()
        return (0, -value, row["model_id"])

    return key


async def test_text_search_matches_id_author_or_tag(gateway: Gateway) -> None:
    page = (await get(gateway, "/v1/models", q="LLaMA", limit=50)).json()
    assert page["items"], "the synthetic hub has llama models"
    assert all("llama" in item["model_id"].lower() for item in page["items"])

    by_tag = (await get(gateway, "/v1/models", q="gguf", limit=100)).json()["items"]
    assert by_tag
    assert all("gguf" in i["model_id"] or "gguf" in i["tags"] for i in by_tag)
    assert any("gguf" not in i["model_id"] for i in by_tag), "some match only through the tag"

    author = EXPLAINED_ID.split("/")[0]
    hits = (await get(gateway, "/v1/models", q=f"{author} explained")).json()["items"]
    assert [i["model_id"] for i in hits] == [EXPLAINED_ID]


async def test_like_wildcards_are_literal(gateway: Gateway) -> None:
    page = (await get(gateway, "/v1/models", q="%_%")).json()
    assert page["items"] == []


@pytest.mark.parametrize("sort", list(SORT_COLUMNS))
async def test_every_sort_pages_without_duplicates_or_gaps(gateway: Gateway, sort: str) -> None:
    # A filter small enough to page through fully, which includes the unscored rows for the null-sorts.
    expected = await db_rows(gateway, "downloads <= $1", 40)
    assert len(expected) > 10
    items = await all_pages(gateway, 7, sort=sort, max_downloads=40)
    ids = [i["model_id"] for i in items]
    assert len(ids) == len(set(ids)), "no duplicates"
    assert set(ids) == {r["model_id"] for r in expected}, "no gaps"
    assert ids == [r["model_id"] for r in sorted(expected, key=order_key(sort))]
    if sort in ("trend", "growth", "created"):
        assert set(UNSCORED_IDS) <= set(ids)
        assert ids[-len(UNSCORED_IDS) :] == sorted(UNSCORED_IDS), "nulls come last"


async def test_filters_combine(gateway: Gateway) -> None:
    params = {
        "task": "text-generation",
        "library": "Transformers",
        "min_downloads": 10,
        "max_downloads": 5000,
        "min_likes": 1,
    }
    items = await all_pages(gateway, 100, sort="downloads", **params)
    expected = await db_rows(
        gateway,
        "pipeline_tag = 'text-generation' AND library_name = 'transformers' AND downloads BETWEEN 10 AND 5000"
        " AND likes >= 1",
    )
    assert expected
    assert sorted(i["model_id"] for i in items) == sorted(r["model_id"] for r in expected)
    downloads = [i["downloads"] for i in items]
    assert downloads == sorted(downloads, reverse=True)


async def test_detail_of_an_id_with_a_slash(gateway: Gateway) -> None:
    detail = (await get(gateway, f"/v1/models/{EXPLAINED_ID}")).raise_for_status().json()
    assert detail["model_id"] == EXPLAINED_ID
    assert detail["probability"] == pytest.approx(0.91)
    assert detail["is_pick"] is True
    assert [c["feature"] for c in detail["explanation"]] == ["likes_7d", "log_downloads"]
    dates = [p["snapshot_date"] for p in detail["history"]]
    assert len(dates) == 5
    assert dates == sorted(dates)
    share = 420 / 600
    assert detail["hype_score"] == pytest.approx(100 * math.sqrt(0.91 * share), abs=0.1)

    synthetic = (await get(gateway, "/v1/models", sort="downloads", limit=1)).json()["items"][0]
    other = (await get(gateway, f"/v1/models/{synthetic['model_id']}")).json()
    assert len(other["history"]) == 8
    assert other["downloads"] == synthetic["downloads"]


async def test_unknown_model_is_a_json_404(gateway: Gateway) -> None:
    response = await get(gateway, "/v1/models/nobody/nothing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def _forged(data: list[object]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"limit": 0}, "validation_error"),
        ({"limit": 101}, "validation_error"),
        ({"sort": "random"}, "validation_error"),
        ({"min_downloads": -1}, "validation_error"),
        ({"min_likes": "many"}, "validation_error"),
        ({"min_likes": 2**40}, "validation_error"),
        ({"q": "x" * 201}, "validation_error"),
        ({"q": "a\x00b"}, "validation_error"),
        ({"min_downloads": 10, "max_downloads": 5}, "bad_range"),
        ({"q": "a b c d e f"}, "too_many_terms"),
        ({"cursor": "not-a-cursor"}, "invalid_cursor"),
        # forged cursors: values beyond the column's range, a NUL in the id (the database would answer 500)
        ({"sort": "likes", "cursor": _forged(["likes", 2**40, "a/b"])}, "invalid_cursor"),
        ({"sort": "downloads", "cursor": _forged(["downloads", 2**64 - 1, "a/b"])}, "invalid_cursor"),
        ({"sort": "downloads", "cursor": _forged(["downloads", 5, "a\x00b"])}, "invalid_cursor"),
        # extreme dates: asyncpg overflowed converting them to UTC (security audit M9: 500)
        ({"sort": "created", "cursor": _forged(["created", "9999-12-31T23:59:59-23:59", "x"])}, "invalid_cursor"),
        ({"sort": "created", "cursor": _forged(["created", "0001-01-01T00:00:00+14:00", "x"])}, "invalid_cursor"),
    ],
)
async def test_bad_params_are_json_422(gateway: Gateway, params: dict[str, Any], code: str) -> None:
    response = await get(gateway, "/v1/models", **params)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code


async def test_a_cursor_from_another_sort_is_refused(gateway: Gateway) -> None:
    cursor = (await get(gateway, "/v1/models", sort="likes", limit=2)).json()["next_cursor"]
    assert cursor
    response = await get(gateway, "/v1/models", sort="downloads", cursor=cursor)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_cursor"


async def test_picks_are_above_the_threshold_best_first(gateway: Gateway) -> None:
    body = (await get(gateway, "/v1/picks", threshold=0.5)).raise_for_status().json()
    probabilities = [p["probability"] for p in body["items"]]
    assert probabilities
    assert min(probabilities) >= 0.5
    assert probabilities == sorted(probabilities, reverse=True)
    expected = await db_rows(gateway, "probability >= 0.5")
    assert len(body["items"]) == min(50, len(expected))
    assert (await get(gateway, "/v1/picks", threshold=1.5)).status_code == 422


async def test_live_picks_pushes_a_new_pick(gateway: Gateway) -> None:
    ws_url = gateway.url.replace("http", "ws", 1) + "/v1/live/picks?threshold=0.8"
    target = (await db_rows(gateway, "probability < 0.1 LIMIT 1"))[0]["model_id"]
    async with websockets.connect(ws_url) as ws:
        snapshot = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        assert snapshot["type"] == "snapshot"
        assert all(p["probability"] >= 0.8 for p in snapshot["items"])
        await asyncio.sleep(0.5)  # the poller has taken its first look
        conn = await asyncpg.connect(gateway.database_url)
        try:
            await conn.execute(
                "UPDATE catalog_models SET probability = 0.97, updated_at = now() WHERE model_id = $1", target
            )
        finally:
            await conn.close()
        pushed = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
    assert pushed["type"] == "pick"
    assert pushed["item"]["model_id"] == target
    assert pushed["item"]["probability"] == pytest.approx(0.97)


async def test_live_picks_rejects_a_bad_threshold(gateway: Gateway) -> None:
    ws_url = gateway.url.replace("http", "ws", 1) + "/v1/live/picks?threshold=abc"
    async with websockets.connect(ws_url) as ws:
        message = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        assert message["error"]["code"] == "validation_error"
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)


async def test_live_picks_before_the_catalog_exists_says_try_again_later(gateway: Gateway) -> None:
    # a browser opening the ticker before the scorer has made the catalog (the demo's first seconds)
    ws_url = gateway.url.replace("http", "ws", 1) + "/v1/live/picks?threshold=0.45"
    conn = await asyncpg.connect(gateway.database_url)
    try:
        await conn.execute("ALTER TABLE catalog_models RENAME TO catalog_models_away")
        try:
            async with websockets.connect(ws_url) as ws:
                message = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 10)
        finally:
            await conn.execute("ALTER TABLE catalog_models_away RENAME TO catalog_models")
    finally:
        await conn.close()
    assert message["error"]["code"] == "unavailable"
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1013  # the ticker reconnects with backoff


async def test_an_empty_catalog_is_not_cached_but_an_empty_narrowed_search_is(gateway: Gateway) -> None:
    # a fresh platform: the browser's first search finds the catalog empty; the next one must see it filled
    url = "/v1/models?sort=likes&limit=7&q="
    narrowed = "/v1/models?sort=likes&limit=7&q=no-such-word-anywhere"
    conn = await asyncpg.connect(gateway.database_url)
    try:
        await conn.execute("ALTER TABLE catalog_models RENAME TO catalog_models_away")
        await conn.execute("CREATE TABLE catalog_models (LIKE catalog_models_away INCLUDING ALL)")
        try:
            async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
                empty = [await client.get(url) for _ in range(2)]
        finally:
            await conn.execute("DROP TABLE catalog_models")
            await conn.execute("ALTER TABLE catalog_models_away RENAME TO catalog_models")
    finally:
        await conn.close()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        filled = await client.get(url)
        nothing = [await client.get(narrowed) for _ in range(2)]
    assert [r.json()["items"] for r in empty] == [[], []]
    assert [r.headers["x-cache"] for r in empty] == ["miss", "miss"]
    assert filled.headers["x-cache"] == "miss"
    assert len(filled.json()["items"]) == 7
    assert nothing[0].json()["items"] == []
    assert nothing[1].headers["x-cache"] == "hit"  # no match for a narrowed search is an answer worth keeping
