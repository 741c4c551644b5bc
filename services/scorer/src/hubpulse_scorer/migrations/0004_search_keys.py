"""Search at scale: one covering keyset index per sort, on a non-null sort key.

Each sort orders by `key DESC, model_id` where key is the column with NULL folded to -infinity (downloads and
likes are NOT NULL already). With a non-null key, a cursor is a plain bound `key <= $v` the index can start
from, instead of an OR over NULLs that walked from the first row. INCLUDE carries the filter columns (task,
library, downloads, likes, tags) so that the gateway's bounded walk ("the first K rows in sort order, then
filter") is an index-only scan with no heap visits; a twin per (task, sort) lets a task-filtered walk read only
that task's rows. The old per-sort indexes these replace are dropped
(`catalog_models_probability` stays: /v1/picks uses it).

Revision ID: 0004_search_keys
"""

from alembic import op

from hubpulse_common.catalog_keys import SORT_KEYS

revision = "0004_search_keys"
down_revision = "0003_search"
branch_labels = None
depends_on = None

INCLUDE = ("pipeline_tag", "library_name", "downloads", "likes", "tags")


def upgrade() -> None:
    for name, sort_key in SORT_KEYS.items():
        key, column = sort_key.expression, sort_key.column
        include = ", ".join(c for c in dict.fromkeys((*INCLUDE, column)) if c != key)
        op.execute(
            f"CREATE INDEX IF NOT EXISTS catalog_models_key_{name} ON catalog_models "
            f"(({key}) DESC, model_id) INCLUDE ({include})"
        )
        # The same per task (half of the searches filter on it): the walk then reads only that task's rows.
        op.execute(
            f"CREATE INDEX IF NOT EXISTS catalog_models_task_key_{name} ON catalog_models "
            f"(pipeline_tag, ({key}) DESC, model_id) INCLUDE ({include.replace('pipeline_tag, ', '')})"
        )
    for column in ("downloads", "likes", "growth_7d", "created_at"):
        op.execute(f"DROP INDEX IF EXISTS catalog_models_{column}")


def downgrade() -> None:
    for column in ("downloads", "likes", "growth_7d", "created_at"):
        op.execute(
            f"CREATE INDEX IF NOT EXISTS catalog_models_{column} ON catalog_models ({column} DESC NULLS LAST, model_id)"
        )
    for name in SORT_KEYS:
        op.execute(f"DROP INDEX IF EXISTS catalog_models_key_{name}")
        op.execute(f"DROP INDEX IF EXISTS catalog_models_task_key_{name}")
