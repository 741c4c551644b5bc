"""`feature_history`'s index by day is a BRIN, not a B-tree.

Batches write a day's history rows together, after the days before it, so a day's rows lie side by side in the
table: a block-range index finds them for the close's read of the day, and costs a batch's COPY next to nothing to
keep up. The B-tree took one entry per model-day. A day's COPY of 200k rows in batches of 5,000 on top of five
stored days: 1.84-1.91 CPU-s of the backend with the BRIN, 2.07-2.37 with the B-tree; reading the day's rows
0.05 against 0.07 CPU-s (docs/decisions/pipeline-redesign.md, session 31).

Revision ID: 0007
"""

from hubpulse_common.migration_ops import replace_index_concurrently

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    replace_index_concurrently("feature_history_day", "feature_history USING brin (snapshot_date)")


def downgrade() -> None:
    replace_index_concurrently("feature_history_day", "feature_history USING btree (snapshot_date)")
