"""`hub_models` is written once per identity: a new `_id`, or a rename; `last_seen` is dropped.

Every cycle rewrote every model's identity row to move `last_seen` (a new row version and WAL for each model,
each day). Nothing read it, and the day a model was last listed is its latest snapshot's date.

Revision ID: 0003
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE hub_models DROP COLUMN last_seen")


def downgrade() -> None:
    op.execute("ALTER TABLE hub_models ADD COLUMN last_seen date")
    op.execute(
        "UPDATE hub_models h SET last_seen = s.last_seen FROM"
        " (SELECT model_id, max(snapshot_date) AS last_seen FROM snapshots GROUP BY model_id) s"
        " WHERE s.model_id = h.model_id"
    )
    op.execute("UPDATE hub_models SET last_seen = first_seen WHERE last_seen IS NULL")
    op.execute("ALTER TABLE hub_models ALTER COLUMN last_seen SET NOT NULL")
