"""A model-day's details (explanation, feature set, features) are written once, with its catalog row, into the
day's `catalog_build` partition; `catalog_details` keeps only the details of models whose build partition is
dropped (hubpulse_common.catalog_details).

A batch wrote each catalog row three times before: staged, inserted into the build partition (its narrow
columns), and upserted into `catalog_details` (a 2M-row table, every day; docs/decisions/pipeline-redesign.md,
session 19). Rows built before this migration have no detail columns: their details stay where the batch that
wrote them put them, in `catalog_details`, and readers fall back to it.

Revision ID: 0017_details_in_build
"""

from alembic import op

revision = "0017_details_in_build"
down_revision = "0016_scores_primary_key_only"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE catalog_build ADD COLUMN explanation text, ADD COLUMN feature_set text, ADD COLUMN features bytea"
    )


def downgrade() -> None:
    # each model's latest scored details go to catalog_details, as the old code's batches upserted them there
    op.execute(
        """
        INSERT INTO catalog_details (model_id, snapshot_date, model_version, explanation, feature_set, features)
        SELECT DISTINCT ON (model_id) model_id, snapshot_date, model_version, explanation, feature_set, features
        FROM catalog_build WHERE features IS NOT NULL
        ORDER BY model_id, snapshot_date DESC
        ON CONFLICT (model_id) DO UPDATE SET snapshot_date = EXCLUDED.snapshot_date,
            model_version = EXCLUDED.model_version, explanation = EXCLUDED.explanation,
            feature_set = EXCLUDED.feature_set, features = EXCLUDED.features
        WHERE catalog_details.snapshot_date <= EXCLUDED.snapshot_date
        """
    )
    op.execute("ALTER TABLE catalog_build DROP COLUMN explanation, DROP COLUMN feature_set, DROP COLUMN features")
