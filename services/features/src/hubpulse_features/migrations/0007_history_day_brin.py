"""`feature_history`'s index by day is a BRIN, not a B-tree.

Batches write a day's history rows together, after the days before it, so a day's rows lie side by side in the
table: a block-range index finds them for the close's read of the day, and costs a batch's COPY next to nothing to
keep up. The B-tree took one entry per model-day. A day's COPY of 200k rows in batches of 5,000 on top of five
stored days: 1.84-1.91 CPU-s of the backend with the BRIN, 2.07-2.37 with the B-tree; reading the day's rows
0.05 against 0.07 CPU-s (docs/decisions/pipeline-redesign.md, session 31).

Revision ID: 0007
"""

from alembic import op

from hubpulse_common.migration_ops import create_index_concurrently, drop_index_concurrently

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _day_index(method: str) -> None:
    """The index by day rebuilt with `method`, under its name (built beside the old one: the close keeps it)."""
    create_index_concurrently("feature_history_day_new", f"feature_history USING {method} (snapshot_date)")
    drop_index_concurrently("feature_history_day")
    op.execute("ALTER INDEX feature_history_day_new RENAME TO feature_history_day")


def upgrade() -> None:
    _day_index("brin")


def downgrade() -> None:
    _day_index("btree")
