"""Scores: one row per model-day-version, with the calibrated probability and its top contributions.

Revision ID: 0002_scores
"""

from alembic import op

revision = "0002_scores"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE scores (
            snapshot_date  date NOT NULL,
            model_id       text NOT NULL,
            model_version  text NOT NULL,
            label          text NOT NULL,
            horizon_days   integer NOT NULL,
            probability    double precision NOT NULL,
            threshold      double precision NOT NULL,
            top_features   jsonb NOT NULL,
            provisional    boolean NOT NULL DEFAULT false,
            scored_at      timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (snapshot_date, model_id, model_version)
        )
        """
    )
    op.execute("CREATE INDEX scores_model ON scores (model_id, snapshot_date DESC)")


def downgrade() -> None:
    op.execute("DROP TABLE scores")
