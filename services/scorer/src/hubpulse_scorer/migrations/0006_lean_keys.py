"""Cheaper catalog writes: the keyset indexes lose the tags array, two redundant indexes go.

A day's upsert rewrites every catalog row with a new entry in every index (never HOT: the sort keys change).
At 200k models the tags array was ~45 % of the ten covering keyset indexes' bytes (all indexes 437 MB -> 250
MB after a seed), and their entries are what the update writes (timings: docs/decisions/search-and-web.md).
`catalog_models_probability` (/v1/picks now reads `catalog_models_key_trend`, the same order for the
non-null probabilities it returns) and `catalog_models_task` (the per-task keyset indexes lead with
pipeline_tag and serve its bitmap) were written on every update for nothing. Search tests a word against
the tags on the heap instead, only where the word is a tag at all (the gateway's walk).

Revision ID: 0006_lean_keys
"""

from hubpulse_common.catalog_keys import SORT_KEYS
from hubpulse_common.migration_ops import create_index_concurrently, drop_index_concurrently

revision = "0006_lean_keys"
down_revision = "0005_catalog_details"
branch_labels = None
depends_on = None


def _keys(include: tuple[str, ...]) -> None:
    for name, sort_key in SORT_KEYS.items():
        key, column = sort_key.expression, sort_key.column
        columns = ", ".join(c for c in dict.fromkeys((*include, column)) if c != key)
        # search reads catalog_models throughout: build without blocking it
        create_index_concurrently(
            f"catalog_models_key_{name}", f"catalog_models (({key}) DESC, model_id) INCLUDE ({columns})"
        )
        create_index_concurrently(
            f"catalog_models_task_key_{name}",
            f"catalog_models (pipeline_tag, ({key}) DESC, model_id) INCLUDE ({columns.replace('pipeline_tag, ', '')})",
        )


def upgrade() -> None:
    drop_index_concurrently("catalog_models_probability")
    drop_index_concurrently("catalog_models_task")
    _keys(("pipeline_tag", "library_name", "downloads", "likes"))


def downgrade() -> None:
    _keys(("pipeline_tag", "library_name", "downloads", "likes", "tags"))
    create_index_concurrently("catalog_models_task", "catalog_models (pipeline_tag, probability DESC NULLS LAST)")
    create_index_concurrently("catalog_models_probability", "catalog_models (probability DESC NULLS LAST, model_id)")
