"""Reads of the scorer's catalog (catalog_models, catalog_daily). The gateway never writes it.

SQL text is assembled only from the fixed column lists and sort mapping here; every value is a bind parameter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from hubpulse_common import feature_vectors
from hubpulse_common.catalog_details import details_of
from hubpulse_common.catalog_keys import FACET_HASH, facet_key
from hubpulse_common.catalog_keys import SORT_KEYS as CATALOG_SORT_KEYS
from hubpulse_gateway.catalog.plan import SampleRows, SearchPlan
from hubpulse_gateway.catalog.query import SearchQuery, has_filters, like_pattern
from hubpulse_gateway.catalog.schemas import SortKey

SUMMARY_COLUMNS = (
    "model_id, author, pipeline_tag, library_name, tags, created_at, snapshot_date, downloads, likes, "
    "trending_rank, growth_7d, probability"
)


# The non-null sort key of each sort, exactly the expressions the scorer's keyset indexes are built on
# (`hubpulse_common.catalog_keys`): `ORDER BY key DESC, model_id` is an index walk.
SORT_KEYS: dict[SortKey, str] = {sort: CATALOG_SORT_KEYS[sort.value].expression for sort in SortKey}
# Columns the walk reads; all are in the covering indexes, so the walk is an index-only scan. The tags array
# is not (a large share of those indexes' bytes, written for every row every day; docs/decisions/search-and-web.md):
# a walk that must test tags reads them from the heap (`tag_walk`), one that need not is guarded instead.
_WALK_COLUMNS = "model_id, pipeline_tag, library_name, downloads, likes"


class _Sql:
    def __init__(self) -> None:
        self.args: list[Any] = []

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"


def _text_conditions(sql: _Sql, query: SearchQuery) -> list[str]:
    """The trigram index serves ILIKE on the id (author/name); tags match whole (GIN on tags)."""
    where = []
    for term in query.terms:
        pattern, tag = sql.arg(like_pattern(term)), sql.arg(term)
        where.append(f"(model_id ILIKE {pattern} OR tags @> ARRAY[{tag}]::text[])")
    return where


def _walk_text(sql: _Sql, query: SearchQuery, tag_walk: bool) -> tuple[list[str], list[str]]:
    """(conditions on each walked row, conditions on the whole walk) of the words, for the walk.

    Whether any row has a word as a tag is asked once of the tags index (an InitPlan; the doubled containment
    is the same test, it lowers the estimate for a word that is no known tag so that EXISTS uses the index,
    0.1 ms, instead of a table scan hoping for an early hit). `tag_walk`: rows are tested against their tags
    (read from the heap) only where the word is a tag at all. Otherwise the walk reads the index alone and
    tests the id, valid only if the word is no tag: if it is one after all, the walk returns nothing (a
    one-time filter, nothing is read) and the index query answers. Pages never depend on the plan.
    """
    rows, walk = [], []
    for term in query.terms:
        pattern, tag = sql.arg(like_pattern(term)), sql.arg(term)
        tags = f"tags @> ARRAY[{tag}]::text[]"
        has_tag = f"EXISTS (SELECT 1 FROM catalog_models WHERE {tags} AND tags @> ARRAY[{tag}, {tag}]::text[])"  # noqa: S608
        if tag_walk:
            rows.append(f"(model_id ILIKE {pattern} OR ({has_tag} AND {tags}))")
        else:
            rows.append(f"model_id ILIKE {pattern}")
            walk.append(f"NOT {has_tag}")
    return rows, walk


def _facet_hash(sql: _Sql, column: str, value: str) -> str:
    """The task or library as the per-task and per-library keyset indexes lead with it (its hash,
    `catalog_keys.facet_key`): a condition those indexes serve. Two values may share a hash, so the text is
    tested too, outside the index's condition (`_facet_conditions`): on the walked rows, or on the index
    query's matches. Beside the hash it would count twice in the planner's estimates (a task taken for its
    share squared), and a prepared search would then stay on custom plans, planned at every execution."""
    return f"{facet_key(column)} = {FACET_HASH}({sql.arg(value)})"


def _facets(query: SearchQuery) -> list[tuple[str, str]]:
    """The (column, value) of the task and library the query narrows to."""
    pairs = (("pipeline_tag", query.task), ("library_name", query.library))
    return [(column, value) for column, value in pairs if value is not None]


def _facet_hashes(sql: _Sql, query: SearchQuery) -> list[str]:
    return [_facet_hash(sql, column, value) for column, value in _facets(query)]


def _facet_conditions(sql: _Sql, query: SearchQuery) -> list[str]:
    return [f"{column} = {sql.arg(value)}" for column, value in _facets(query)]


def _range_conditions(sql: _Sql, query: SearchQuery) -> list[str]:
    where: list[str] = []
    if query.min_downloads is not None:
        where.append(f"downloads >= {sql.arg(query.min_downloads)}")
    if query.max_downloads is not None:
        where.append(f"downloads <= {sql.arg(query.max_downloads)}")
    if query.min_likes is not None:
        where.append(f"likes >= {sql.arg(query.min_likes)}")
    return where


def _filter_conditions(sql: _Sql, query: SearchQuery) -> list[str]:
    return _facet_conditions(sql, query) + _range_conditions(sql, query)


def _conditions(sql: _Sql, query: SearchQuery) -> list[str]:
    return _text_conditions(sql, query) + _filter_conditions(sql, query)


def _after_cursor(sql: _Sql, query: SearchQuery) -> list[str]:
    """Keyset on (key DESC, model_id ASC): strictly after the cursor's row. `key <= v` is the index bound."""
    if query.cursor is None:
        return []
    key = SORT_KEYS[query.sort]
    # decode_cursor admits a null value only for the sorts that fold NULL (query.NULLABLE_SORTS)
    null = CATALOG_SORT_KEYS[query.sort.value].null
    value = null if query.cursor.value is None and null is not None else sql.arg(query.cursor.value)
    mid = sql.arg(query.cursor.model_id)
    return [f"{key} <= {value}", f"({key} < {value} OR model_id > {mid})"]


def _where(parts: list[str]) -> str:
    return " WHERE " + " AND ".join(parts) if parts else ""


def walk_sql(
    query: SearchQuery, window: int, tag_walk: bool = False, by_library: bool = False
) -> tuple[str, list[Any]]:
    """The sort index walked for at most `window` rows (index-only unless `tag_walk`), filtered, then the
    page's rows by id. Only the task's entries of the sort index are walked when a task is given, or the
    library's (`by_library`); the other condition filters the walked rows.

    Fast when matches are common; a page shorter than `limit + 1` is not final (see `search`).
    """
    sql = _Sql()
    key = SORT_KEYS[query.sort]
    after = _after_cursor(sql, query)
    # the walked rows' task and library text are tested with the other conditions (`_filter_conditions`)
    if by_library and query.library is not None:  # the per-library keyset indexes
        after.append(_facet_hash(sql, "library_name", query.library))
    elif query.task is not None:  # the per-task keyset indexes
        after.append(_facet_hash(sql, "pipeline_tag", query.task))
    rows, walk = _walk_text(sql, query, tag_walk)
    after += walk
    conditions = rows + _filter_conditions(sql, query)
    columns = f"{_WALK_COLUMNS}, tags" if tag_walk else _WALK_COLUMNS
    page = sql.arg(query.limit + 1)
    text = (
        f"SELECT {SUMMARY_COLUMNS} FROM catalog_models WHERE model_id = ANY(ARRAY("  # noqa: S608
        f"SELECT model_id FROM (SELECT {columns}, {key} AS sort_key FROM catalog_models{_where(after)} "
        f"ORDER BY {key} DESC, model_id LIMIT {int(window)}) w{_where(conditions)} "
        f"ORDER BY sort_key DESC, model_id LIMIT {page})) ORDER BY {key} DESC, model_id"
    )
    return text, sql.args


def search_sql(query: SearchQuery, text_only: bool = False) -> tuple[str, list[Any]]:
    """All matches found through the text and filter indexes (trigram/tags GIN, task, library), then sorted.

    The CTE is materialised so the planner picks the cheapest way to find every match, instead of walking
    the sort index and filtering row by row (which, for a rare term, reads the whole table). `text_only`
    leaves the filters outside the CTE, so only the text indexes find rows: for a rare word, ANDing the
    bitmap of a common task (a quarter of the table) costs far more than the few rows it removes.
    """
    sql = _Sql()
    key = SORT_KEYS[query.sort]
    inner = _text_conditions(sql, query) + _after_cursor(sql, query)
    if text_only:
        outer = _filter_conditions(sql, query)
    else:  # the task and library by their indexes' hash, their text on the matches
        inner += _facet_hashes(sql, query) + _range_conditions(sql, query)
        outer = _facet_conditions(sql, query)
    text = (
        f"WITH m AS MATERIALIZED (SELECT {SUMMARY_COLUMNS}, {key} AS sort_key FROM catalog_models"  # noqa: S608
        f"{_where(inner)}) SELECT {SUMMARY_COLUMNS} FROM m{_where(outer)} ORDER BY sort_key DESC, model_id "
        f"LIMIT {sql.arg(query.limit + 1)}"
    )
    return text, sql.args


async def search(pool: asyncpg.Pool, query: SearchQuery, plan: SearchPlan) -> list[asyncpg.Record]:
    """Walks of the first `plan.walk` (then `plan.rewalk`) rows of the sort index; if they did not fill the
    page (or the plan has no walk), the index-driven query.

    The walk fills the page for common words (a page needs few rows in sort order); rare words and narrow
    filters end in the second query, whose cost is the number of matches, which is then small.
    """
    for window in (plan.walk, plan.rewalk) if plan.walk is not None else ():
        if window is None:
            continue
        sql, args = walk_sql(query, window, plan.tag_walk, plan.by_library)
        rows: list[asyncpg.Record] = await pool.fetch(sql, *args)
        if len(rows) > query.limit or not (query.terms or has_filters(query)):
            return rows
    sql, args = search_sql(query, plan.text_only and bool(query.terms))
    rows = await pool.fetch(sql, *args)
    return rows


async def sample(pool: asyncpg.Pool, size: int) -> tuple[SampleRows, int]:
    """About `size` rows drawn uniformly (BERNOULLI: row by row, so neighbouring ids do not come in pages),
    and the table's row count as of its last ANALYZE."""
    total: int = await pool.fetchval(
        "SELECT GREATEST(reltuples, 0)::bigint FROM pg_class WHERE oid = 'catalog_models'::regclass"
    )
    if total == 0:  # never analysed (or empty): count; this table is small then
        total = await pool.fetchval("SELECT count(*) FROM catalog_models")
    percent = min(100.0, 100.0 * size / max(total, 1))
    rows = await pool.fetch(
        "SELECT model_id, tags, pipeline_tag, library_name, downloads, likes "
        "FROM catalog_models TABLESAMPLE BERNOULLI ($1)",
        percent,
    )
    return (
        SampleRows(
            ids=[r["model_id"] for r in rows],
            tags=[r["tags"] for r in rows],
            task=[r["pipeline_tag"] for r in rows],
            library=[r["library_name"] for r in rows],
            downloads=[r["downloads"] for r in rows],
            likes=[r["likes"] for r in rows],
        ),
        total,
    )


async def renamed_to(pool: asyncpg.Pool, model_id: str) -> str | None:
    """The current name of a model the Hub renamed (the ingestor's `model_renames`), if `model_id` is an old one."""
    try:
        new_id: str | None = await pool.fetchval("SELECT new_id FROM model_renames WHERE old_id = $1", model_id)
    except asyncpg.UndefinedTableError:  # a catalog without the ingestor's tables (e.g. a seeded benchmark)
        return None
    return new_id


async def model(pool: asyncpg.Pool, model_id: str) -> dict[str, Any] | None:
    """The catalog row and its details (features, explanation), by id. The explanation is null when the scorer
    has not computed it yet (it does on demand: `routes.models`), an empty list when there are no details; the
    features are the stored vector read against its names (`feature_vectors`), empty when there are none."""
    row: asyncpg.Record | None = await pool.fetchrow(
        f"SELECT {SUMMARY_COLUMNS}, downloads_all_time, last_modified, catalog_models.model_version, label, "  # noqa: S608
        "threshold, (CASE WHEN d.found THEN d.explanation ELSE '[]' END)::jsonb AS explanation, "
        "d.features AS vector, d.names FROM catalog_models LEFT JOIN LATERAL "
        f"(SELECT explanation, features, names, true AS found FROM ({details_of('catalog_models')}) x) d ON true "
        "WHERE model_id = $1",
        model_id,
    )
    if row is None:
        return None
    detail = dict(row)
    vector, names = detail.pop("vector"), detail.pop("names")
    detail["features"] = feature_vectors.decode(vector, names) if vector is not None and names is not None else {}
    return detail


_DAILY = (
    "SELECT snapshot_date, downloads, likes, trending_rank, probability, model_version "
    "FROM catalog_daily WHERE model_id = $1 ORDER BY snapshot_date"
)
# A renamed model's days under its old names too (the ingestor's model_renames); its own row wins a shared day.
# The names as one array, so that the key is walked for each (`model_id = $1 OR model_id IN (subquery)` read the
# whole table: 183-190 ms a model at 3M model-days; docs/decisions/pipeline-redesign.md, session 30).
_DAILY_RENAMED = """
    SELECT DISTINCT ON (snapshot_date) snapshot_date, downloads, likes, trending_rank, probability, model_version
    FROM catalog_daily
    WHERE model_id = ANY(ARRAY(SELECT $1::text UNION ALL SELECT old_id FROM model_renames WHERE new_id = $1))
    ORDER BY snapshot_date, model_id = $1 DESC
"""


async def daily(pool: asyncpg.Pool, model_id: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record]
    try:
        rows = await pool.fetch(_DAILY_RENAMED, model_id)
    except asyncpg.UndefinedTableError:  # a catalog without the ingestor's tables (e.g. a seeded benchmark)
        rows = await pool.fetch(_DAILY, model_id)
    return rows


_PICK_COLUMNS = (
    "model_id, pipeline_tag, library_name, downloads, likes, probability, snapshot_date, updated_at, likes_7d"
)


async def picks(pool: asyncpg.Pool, threshold: float, limit: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        # The trend sort's keyset index (the same order: a threshold >= 0 leaves out the NULLs it folds).
        f"SELECT {_PICK_COLUMNS} FROM catalog_models WHERE {SORT_KEYS[SortKey.trend]} >= $1 "  # noqa: S608
        f"ORDER BY {SORT_KEYS[SortKey.trend]} DESC, model_id LIMIT $2",
        threshold,
        limit,
    )
    return rows


async def picks_changed_since(
    pool: asyncpg.Pool, since: datetime, min_threshold: float, limit: int
) -> list[asyncpg.Record]:
    """Rows scored at or above `min_threshold` and touched after `since`, oldest change first."""
    rows: list[asyncpg.Record] = await pool.fetch(
        f"SELECT {_PICK_COLUMNS} FROM catalog_models WHERE updated_at > $1 AND probability >= $2 "  # noqa: S608
        "ORDER BY updated_at LIMIT $3",
        since,
        min_threshold,
        limit,
    )
    return rows


async def latest_update(pool: asyncpg.Pool) -> datetime | None:
    value: datetime | None = await pool.fetchval("SELECT max(updated_at) FROM catalog_models")
    return value
