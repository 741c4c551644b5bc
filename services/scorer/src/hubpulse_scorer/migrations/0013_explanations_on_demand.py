"""Explanations where they are read: `catalog_details.explanation` and `scores.top_features` may be NULL (not
computed when scored; docs/decisions/pipeline-redesign.md), and `catalog_details.model_version` names the version
that scored the row's features, the one that explains it on demand.

Adding a nullable column without a default, and dropping NOT NULL, rewrite nothing (instant at 2M rows).

Revision ID: 0013_explanations_on_demand
"""

from alembic import op

revision = "0013_explanations_on_demand"
down_revision = "0012_scores_text"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE catalog_details ADD COLUMN model_version text, "
        "ALTER COLUMN explanation DROP NOT NULL, ALTER COLUMN explanation DROP DEFAULT"
    )
    op.execute("ALTER TABLE scores ALTER COLUMN top_features DROP NOT NULL")


def downgrade() -> None:
    # an explanation not computed yet reads as none, as before
    op.execute("UPDATE scores SET top_features = '[]' WHERE top_features IS NULL")
    op.execute("ALTER TABLE scores ALTER COLUMN top_features SET NOT NULL")
    op.execute("UPDATE catalog_details SET explanation = '[]' WHERE explanation IS NULL")
    op.execute(
        "ALTER TABLE catalog_details DROP COLUMN model_version, "
        "ALTER COLUMN explanation SET DEFAULT '[]', ALTER COLUMN explanation SET NOT NULL"
    )
