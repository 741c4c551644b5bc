"""`scores` keeps its primary key only: the second index (`scores_model`, model then day) goes.

Every scored model-day inserts into each index of `scores`; `scores_model` served only a rename's move of a
model's scores (hubpulse_common.renames: `WHERE model_id = $1`). PostgreSQL 18 (what the stack runs) answers that
from the primary key (snapshot_date, model_id, model_version) by a skip scan: one descent per day, no scan of the
table (docs/decisions/pipeline-redesign.md, session 12).

Revision ID: 0016_scores_primary_key_only
"""

from alembic import op

revision = "0016_scores_primary_key_only"
down_revision = "0015_facet_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX scores_model")


def downgrade() -> None:
    op.execute("CREATE INDEX scores_model ON scores (model_id, snapshot_date DESC)")
