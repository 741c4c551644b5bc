"""The sort keys of the search read model (`catalog_models`), one expression per sort.

The scorer's migrations index exactly these expressions and the gateway orders by them, so that
`ORDER BY key DESC, model_id` walks an index. NULL is folded to -infinity (downloads and likes are NOT NULL),
so a cursor is a plain bound `key <= value`. Frozen: databases already hold indexes on these expressions; a
different key is a new name here and a new migration.
"""

from __future__ import annotations

# sort name -> (key expression, the column it reads)
SORT_KEYS: dict[str, tuple[str, str]] = {
    "trend": ("COALESCE(probability, '-Infinity'::double precision)", "probability"),
    "downloads": ("downloads", "downloads"),
    "likes": ("likes", "likes"),
    "growth": ("COALESCE(growth_7d, '-Infinity'::double precision)", "growth_7d"),
    "created": ("COALESCE(created_at, '-infinity'::timestamptz)", "created_at"),
}
