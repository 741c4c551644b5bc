"""Search plans (walk the sort index, or the text/filter indexes) give the same pages; the hot-query cache."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from gateway.gateway_process import Gateway
from hubpulse_gateway.catalog import presentation, repository
from hubpulse_gateway.catalog import query as search_query
from hubpulse_gateway.catalog.plan import MAX_WALK, MIN_WALK, CatalogSample, SampleRows, SearchPlan
from hubpulse_gateway.catalog.schemas import SortKey

PLANS = [
    SearchPlan(MIN_WALK),
    SearchPlan(MAX_WALK),
    SearchPlan(MIN_WALK, rewalk=4 * MIN_WALK),
    SearchPlan(MIN_WALK, tag_walk=True),
    SearchPlan(MAX_WALK, tag_walk=True),
    SearchPlan(MIN_WALK, rewalk=MAX_WALK, by_library=True),
    SearchPlan(MAX_WALK, tag_walk=True, by_library=True),
    SearchPlan(None),
    SearchPlan(None, text_only=True),
]


def query(**params: object) -> search_query.SearchQuery:
    args: dict[str, object] = {
        "q": None,
        "task": None,
        "library": None,
        "min_downloads": None,
        "max_downloads": None,
        "min_likes": None,
        "sort": SortKey.trend,
        "cursor": None,
        "limit": 20,
    }
    return search_query.normalise_query(**{**args, **params})  # type: ignore[arg-type]


@pytest.fixture
async def pool(gateway: Gateway) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(gateway.database_url, min_size=1, max_size=1) as pool:
        yield pool


@pytest.mark.parametrize(
    "params",
    [
        {"q": "llama"},
        {"q": "llama instruct", "sort": SortKey.downloads},
        {"q": "gguf", "task": "text-generation", "sort": SortKey.likes},
        {"q": "transformers", "sort": SortKey.downloads},  # a tag that few ids contain
        {"task": "text-classification", "library": "transformers", "min_downloads": 10, "sort": SortKey.created},
        {"q": "explained"},
        {"q": "llama", "library": "transformers", "sort": SortKey.likes},
        {"q": "gguf", "task": "text-generation", "library": "transformers", "min_downloads": 10},
        {"q": "nothing-matches-this"},
        {"max_downloads": 40, "sort": SortKey.growth, "limit": 7},
    ],
)
async def test_every_plan_returns_the_same_pages(pool: asyncpg.Pool, params: dict[str, object]) -> None:
    first = query(**params)
    pages = [await repository.search(pool, first, plan) for plan in PLANS]
    ids = [[r["model_id"] for r in page] for page in pages]
    assert all(i == ids[0] for i in ids), ids
    if len(pages[0]) > first.limit:  # and the next page, through the cursor
        cursor = presentation.page_of(pages[0], first)["next_cursor"]
        second = query(**params, cursor=cursor)
        after = [[r["model_id"] for r in await repository.search(pool, second, plan)] for plan in PLANS]
        assert all(i == after[0] for i in after), after
        assert not set(after[0]) & set(ids[0][: first.limit])


async def test_a_repeated_search_is_answered_from_the_cache(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        url = "/v1/models?q=cache-probe-llama&sort=likes&limit=5"
        counted_before = _search_200s((await client.get("/metrics")).text)
        first = await client.get(url)
        again = await client.get(url)
        respelled = await client.get("/v1/models", params={"limit": 5, "sort": "likes", "q": "CACHE-probe-LLAMA"})
        counted = _search_200s((await client.get("/metrics")).text) - counted_before
    assert first.status_code == again.status_code == respelled.status_code == 200
    assert first.headers["x-cache"] == "miss"
    assert again.headers["x-cache"] == "hit"  # the raw query string, before routing
    assert respelled.headers["x-cache"] == "hit"  # the same normalised query
    assert first.content == again.content == respelled.content
    assert again.headers["content-type"] == "application/json"
    assert again.headers["x-request-id"]  # the shared middleware still runs on a cached answer
    # and counts the two hits under the search route, like the miss, not as an unmatched path
    assert counted == 3


def _search_200s(metrics: str) -> float:
    line = 'hubpulse_http_requests_total{method="GET",route="/v1/models",service="gateway",status="200"} '
    return sum(float(row[len(line) :]) for row in metrics.splitlines() if row.startswith(line))


def sample(n_llama: int, n_other: int) -> CatalogSample:
    ids = [f"org{i % 7}/llama-7b-{i:x}" for i in range(n_llama)] + [f"lab/bert-base-{i:x}" for i in range(n_other)]
    n = len(ids)
    return CatalogSample(
        SampleRows(
            ids=ids,
            tags=[["transformers"]] * n,
            task=["text-generation" if i % 4 == 0 else "fill-mask" for i in range(n)],
            library=["transformers"] * n,
            downloads=list(range(n)),
            likes=[0] * n,
        ),
        total=100 * n,
    )


def test_the_planner_walks_for_common_words_and_uses_the_indexes_for_rare_ones() -> None:
    planner = sample(n_llama=5_000, n_other=15_000)
    common = planner.plan(query(q="llama"))
    assert common.walk is not None
    assert MIN_WALK <= common.walk <= MAX_WALK
    assert common.walk & (common.walk - 1) == 0, "a power of two: few distinct SQL texts"
    assert planner.plan(query(q="no-such-word")).walk is None
    # Present in the sample but rare: one id in 20k is 100 rows of 2M; no walk finds a page of those.
    assert planner.plan(query(q="llama-7b-1f3")).walk is None
    # A rare word with a common task: the task's bitmap costs more than the few rows it removes.
    assert planner.plan(query(q="llama-7b-1f3", task="fill-mask")).text_only
    # A common word with a costly index query: a longer walk is planned in case the first comes back short.
    assert common.rewalk is None or common.rewalk >= 4 * common.walk
    # A downloads range alone has no index but the sort's: walk, and walk on if short.
    ranged = planner.plan(query(max_downloads=40))
    assert ranged.walk is not None
    assert ranged.rewalk is not None
    # The tag vocabulary counts as text too (tags @> ARRAY[word]), and such a walk reads the tags.
    tagged = planner.plan(query(q="transformers"))
    assert tagged.walk == MIN_WALK
    assert tagged.tag_walk
    assert not common.tag_walk


def mixed() -> CatalogSample:
    """llama: the first quarter of the rows; text-generation: every 4th row; peft: every 50th from the 2nd."""
    n = 20_000
    rows = SampleRows(
        ids=[f"org/llama-{i:x}" if i < n // 4 else f"lab/bert-{i:x}" for i in range(n)],
        tags=[[] for _ in range(n)],
        task=["text-generation" if i % 4 == 0 else "fill-mask" for i in range(n)],
        library=["peft" if i % 50 == 1 else "transformers" for i in range(n)],
        downloads=[0] * n,
        likes=[0] * n,
    )
    return CatalogSample(rows, total=100 * n)


def test_conditions_no_sampled_row_meets_together_still_expect_some_matches() -> None:
    # No sampled row is llama, text-generation and peft, but 20k sampled rows of 2M say little about a
    # combination that rare.
    plan = mixed().plan(query(q="llama", task="text-generation", library="peft"))
    assert plan.walk is not None, "a walk of the library's index costs less than the word's trigram bitmaps"
    assert mixed().plan(query(q="mistral", task="text-generation")).walk is None


def test_the_walk_reads_the_smaller_of_the_task_and_the_library() -> None:
    planner = mixed()
    assert planner.plan(query(q="llama", library="peft")).by_library
    assert planner.plan(query(q="llama", task="text-generation", library="peft")).by_library
    assert not planner.plan(query(q="llama", task="text-generation", library="transformers")).by_library
    assert not planner.plan(query(q="llama", task="text-generation")).by_library


def test_the_sample_finds_words_in_ids_as_ilike_does() -> None:
    ids = ["Org/Llama-7B-GGUF", "lab/llama-llama", "x/İstanbul-Straße", "a/b", "de/Ümlaut-gguf"]
    ids += [f"bulk/common-{i}" for i in range(5_000)]  # "common": more rows than are checked one by one
    n = len(ids)
    planner = CatalogSample(SampleRows(ids, [[] for _ in ids], [None] * n, [None] * n, [0] * n, [0] * n), n)
    words = ["llama", "gguf", "7b", "b", "straße", "ümlaut", "llama-llama", "a/b", "common", "common-49", "zzz"]
    for word in words:
        expected = [row for row, i in enumerate(ids) if word in i.lower()]
        assert planner._ids_containing(word).tolist() == expected, word


def test_an_empty_sample_falls_back_to_walking() -> None:
    empty = CatalogSample(SampleRows([], [], [], [], [], []), 0)
    assert empty.plan(query()).walk == MIN_WALK
    assert empty.plan(query(q="llama")).walk == MAX_WALK


async def test_a_library_or_task_that_shares_its_hash_with_another_keeps_to_its_own_rows(gateway: Gateway) -> None:
    """The per-task and per-library keyset indexes lead with the value's 32-bit hash (`catalog_keys.facet_key`):
    two values with one hash share their entries, and every plan must still return only the asked one's rows."""
    conn = await asyncpg.connect(gateway.database_url)
    tx = conn.transaction()
    await tx.start()
    try:
        one, other = await conn.fetchval(
            "SELECT array_agg(s ORDER BY s) FROM (SELECT 'hash-' || g AS s FROM generate_series(1, 300000) g) x "
            "GROUP BY hashtext(s) HAVING count(*) > 1 ORDER BY 1 LIMIT 1"
        )
        rows = [
            (f"collide/{name}-{n}", name, 10 * n + (5 if name == other else 0)) for name in (one, other) for n in (1, 2)
        ]
        await conn.executemany(
            "INSERT INTO catalog_models (model_id, pipeline_tag, library_name, snapshot_date, downloads, likes, "
            "probability) VALUES ($1, $2, $2, current_date, $3, 1, 0.5)",
            rows,
        )
        for facet in ("task", "library"):
            asked = query(q="collide", sort=SortKey.downloads, **{facet: one})
            statements = [
                repository.walk_sql(asked, MAX_WALK, tag, by_library)
                for tag in (False, True)
                for by_library in (False, True)
            ]
            statements += [repository.search_sql(asked, text_only) for text_only in (False, True)]
            for sql, args in statements:
                found = [r["model_id"] for r in await conn.fetch(sql, *args)]
                assert found == [f"collide/{one}-2", f"collide/{one}-1"], (facet, sql)
    finally:
        await tx.rollback()
        await conn.close()


def _index_scans(node: dict[str, Any]) -> list[dict[str, Any]]:
    own = [node] if "Index Name" in node else []
    return own + [scan for child in node.get("Plans", []) for scan in _index_scans(child)]


@pytest.mark.parametrize("facet", ["task", "library"])
async def test_a_walk_narrowed_by_a_task_or_library_is_estimated_at_its_share(gateway: Gateway, facet: str) -> None:
    """The walk's index condition is the value's hash alone, its text is tested on the walked rows: the two side
    by side counted twice in the planner's estimate (a task taken for its share squared), and a prepared search
    stayed on custom plans, planned again at every execution."""
    column = {"task": "pipeline_tag", "library": "library_name"}[facet]
    conn = await asyncpg.connect(gateway.database_url)
    try:
        await conn.execute("ANALYZE catalog_models")
        value, rows = await conn.fetchrow(
            f"SELECT {column}, count(*) FROM catalog_models WHERE {column} IS NOT NULL "  # noqa: S608
            "GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
        )
        sql, args = repository.walk_sql(query(**{facet: value}), MAX_WALK, by_library=facet == "library")
        plan = json.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))
    finally:
        await conn.close()
    [walk] = [scan for scan in _index_scans(plan[0]["Plan"]) if scan["Index Name"].endswith(f"{facet}_key_trend")]
    assert rows / 2 <= walk["Plan Rows"] <= rows * 2, (walk["Plan Rows"], rows)
