"""`scores.top_features` keeps the explanation as the JSON text the scorer writes, not jsonb (as 0007 did for
`catalog_details`): nothing queries inside it, and the jsonb parse of every number was a large share of the
scores upsert, one of the pipeline's biggest statements once the catalog is swapped in
(docs/decisions/pipeline-redesign.md).

Revision ID: 0012_scores_text
"""

from alembic import op

revision = "0012_scores_text"
# also merges the scores branch (0002, from 0001) into the one line: the table it alters must exist first
down_revision = ("0011_catalog_build", "0002_scores")
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE scores ALTER COLUMN top_features TYPE text USING top_features::text")


def downgrade() -> None:
    op.execute("ALTER TABLE scores ALTER COLUMN top_features TYPE jsonb USING top_features::jsonb")
