"""Per-library keyset indexes, as the per-task ones: search with a library filter walks only that library.

Without them a search with a library filter (a third of the bench mix) either walked the whole sort index and
dropped the other libraries' rows, or went to the bitmap query; those searches took ~65 % of the query time
over the bench mix at 2M (docs/decisions/search-and-web.md, session 4). Each is (library_name, key DESC,
model_id) INCLUDE the columns the walk filters on; `catalog_models_library` goes, as their leading column
serves the library's bitmap. Four more indexes on the daily upsert's write path (timed in the same doc).

Revision ID: 0009_library_keys
"""

from hubpulse_common.catalog_keys import SORT_KEYS
from hubpulse_common.migration_ops import create_index_concurrently, drop_index_concurrently

revision = "0009_library_keys"
down_revision = "0008_catalog_autovacuum"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for name, sort_key in SORT_KEYS.items():
        key, column = sort_key.expression, sort_key.column
        columns = ", ".join(c for c in dict.fromkeys(("pipeline_tag", "downloads", "likes", column)) if c != key)
        # search reads catalog_models throughout: build without blocking it
        create_index_concurrently(
            f"catalog_models_library_key_{name}",
            f"catalog_models (library_name, ({key}) DESC, model_id) INCLUDE ({columns})",
        )
    drop_index_concurrently("catalog_models_library")


def downgrade() -> None:
    create_index_concurrently("catalog_models_library", "catalog_models (library_name)")
    for name in SORT_KEYS:
        drop_index_concurrently(f"catalog_models_library_key_{name}")
