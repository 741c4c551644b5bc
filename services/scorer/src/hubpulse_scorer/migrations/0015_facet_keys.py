"""The per-task and per-library keyset indexes lead with the facet's hash (`catalog_keys.facet_key`), not its text.

Each daily swap builds the catalog's indexes anew (0011); these ten sort the whole catalog on (facet, sort key, id)
with most rows tied on the facet, and a text first column was a third of the build's index CPU. With an integer
first column each comparison is an integer one (docs/decisions/pipeline-redesign.md, session 11). The facet's
text moves into INCLUDE: a walk narrowed by the hash tests it there, index-only, since two values may share a
hash. Same names, so the swap (which copies the live table's index definitions) builds the new ones from here on.

Revision ID: 0015_facet_keys
"""

from alembic import op

from hubpulse_common.catalog_keys import SORT_KEYS, facet_key
from hubpulse_common.migration_ops import create_index_concurrently

revision = "0015_facet_keys"
down_revision = "0014_feature_vectors"
branch_labels = None
depends_on = None

_INDEXES = {"task": "pipeline_tag", "library": "library_name"}


def _keys(lead: bool) -> None:
    """`lead`: the facet's hash first; else the facet's text (0006, 0009)."""
    for name, sort_key in SORT_KEYS.items():
        key, column = sort_key.expression, sort_key.column
        for index, facet in _INDEXES.items():
            first = facet_key(facet) if lead else facet
            facets = ("pipeline_tag", "library_name") if lead or index == "task" else ("pipeline_tag",)
            include = [c for c in dict.fromkeys((*facets, "downloads", "likes", column)) if c not in (key, first)]
            # search reads catalog_models throughout: build without blocking it
            create_index_concurrently(
                f"catalog_models_{index}_key_{name}",
                f"catalog_models (({first}), ({key}) DESC, model_id) INCLUDE ({', '.join(include)})",
            )


def upgrade() -> None:
    _keys(lead=True)
    # the planner's statistics of the new index expressions (until the next swap's ANALYZE): without them it
    # takes a task for 0.5 % of the catalog and may walk a wrong index
    op.execute("ANALYZE catalog_models")


def downgrade() -> None:
    _keys(lead=False)
