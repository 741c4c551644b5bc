"""`scores` is no longer written: it becomes `scores_archive`, kept as it stands.

Every scored model-day was written three times by the scorer's batch: its build row (`catalog_build`), its
`catalog_daily` row and its `scores` row. Nothing read `scores` (the gateway's history reads `catalog_daily`,
the model page reads the build rows' details, consumers read `hub.scores.v1`), and a day of the whole Hub was a 2M-row
COPY into it (docs/decisions/pipeline-redesign.md, session 21). A model-day's probability and the model version
that gave it are in `catalog_daily`; its label, threshold and explanation in its build row while the scorer keeps
it; every score, each version's, is published on `hub.scores.v1`.

The rows written until now stay, under the new name, for whoever queries them (a rename no longer moves them).

Revision ID: 0018_scores_archived
"""

from alembic import op

revision = "0018_scores_archived"
down_revision = "0017_details_in_build"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE scores RENAME TO scores_archive")
    op.execute("ALTER INDEX scores_pkey RENAME TO scores_archive_pkey")
    op.execute(
        "COMMENT ON TABLE scores_archive IS 'Scores written until scorer migration 0018; since then a model-day''s "
        "probability and model version are in catalog_daily and every score is published on hub.scores.v1.'"
    )


def downgrade() -> None:
    op.execute("COMMENT ON TABLE scores_archive IS NULL")
    op.execute("ALTER INDEX scores_archive_pkey RENAME TO scores_pkey")
    op.execute("ALTER TABLE scores_archive RENAME TO scores")
