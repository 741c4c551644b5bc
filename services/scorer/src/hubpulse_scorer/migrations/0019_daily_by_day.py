"""`catalog_daily` keyed (snapshot_date, model_id), not (model_id, snapshot_date).

The table keeps every model-day for the history charts, and nothing drops it. Keyed by model first, each day's
rows (2M at the whole Hub) went in at random places of one index over the whole history: every day touched about
every leaf page of it, and after a checkpoint each one's first change was logged whole. Keyed by day first, a
day's rows go in side by side at the index's end. With 30 days of 200k models, a day's COPY took 1.44 CPU-s and
40 MB of WAL instead of 2.15-2.80 CPU-s and 336-360 MB (docs/decisions/pipeline-redesign.md, session 30).

The gateway's history read (`WHERE model_id = $1 ORDER BY snapshot_date`) is a skip scan of the new key on
PostgreSQL 18: one descent per day kept (0.53-0.58 ms against 0.31-0.33 at 30 days), as a rename's move of
`scores` has been since 0016. The new key is built concurrently; the swap of the two keys holds the table's lock
for a moment only.

Revision ID: 0019_daily_by_day
"""

from alembic import op

from hubpulse_common.migration_ops import create_index_concurrently

revision = "0019_daily_by_day"
down_revision = "0018_scores_archived"
branch_labels = None
depends_on = None


def _key(columns: str) -> None:
    create_index_concurrently("catalog_daily_key", f"catalog_daily ({columns})", unique=True)
    op.execute(
        "ALTER TABLE catalog_daily DROP CONSTRAINT catalog_daily_pkey, "
        "ADD CONSTRAINT catalog_daily_pkey PRIMARY KEY USING INDEX catalog_daily_key"
    )


def upgrade() -> None:
    _key("snapshot_date, model_id")


def downgrade() -> None:
    _key("model_id, snapshot_date")
