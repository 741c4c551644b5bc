"""The sort keys of the search read model (`catalog_models`), one per sort.

The scorer's migrations index exactly these expressions and the gateway orders by them, so that
`ORDER BY key DESC, model_id` walks an index. NULL is folded to -infinity (downloads and likes are NOT NULL),
so a cursor is a plain bound `key <= value`. Frozen: databases already hold indexes on these expressions; a
different key is a new name here and a new migration.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CatalogSortKey:
    column: str
    null: str | None = None  # the SQL literal NULL folds to; None: the column is NOT NULL

    @property
    def expression(self) -> str:
        return self.column if self.null is None else f"COALESCE({self.column}, {self.null})"


_FLOAT_MIN = "'-Infinity'::double precision"

SORT_KEYS: dict[str, CatalogSortKey] = {
    "trend": CatalogSortKey("probability", _FLOAT_MIN),
    "downloads": CatalogSortKey("downloads"),
    "likes": CatalogSortKey("likes"),
    "growth": CatalogSortKey("growth_7d", _FLOAT_MIN),
    "created": CatalogSortKey("created_at", "'-infinity'::timestamptz"),
}


# The columns search narrows a keyset walk to one value of (the per-task and per-library keyset indexes).
FACETS = ("pipeline_tag", "library_name")
FACET_HASH = "hashtext"


def facet_key(column: str) -> str:
    """What the per-task and per-library keyset indexes lead with: the value's 32-bit hash, not the text.

    Those indexes sort the whole catalog on (facet, sort key, id) at every daily build, and most rows tie on the
    facet (a few dozen tasks and libraries): an integer first column makes each comparison an integer one
    (docs/decisions/pipeline-redesign.md, session 11). `hashtext` is immutable, so every writer gets it for free
    (no code table to keep in step). Two values may share a hash: a walk narrowed by it also tests the text,
    which the indexes INCLUDE. Frozen, as the sort keys are.
    """
    if column not in FACETS:
        raise ValueError(f"not a facet: {column}")
    return f"{FACET_HASH}({column})"
