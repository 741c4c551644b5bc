"""Renames the Hub made (issue 14): old name -> current name, and the day the new name was first seen.

A snapshot marked `renamed_from` moves the old name's history to the new one; this table files the old name's
late snapshots (dated before the rename) under the new name and tells the day's close to pass the mark on.

Revision ID: 0002
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE feature_renames (
            old_id      text PRIMARY KEY,
            new_id      text NOT NULL,
            renamed_on  date NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX feature_renames_day ON feature_renames (renamed_on)")


def downgrade() -> None:
    op.execute("DROP TABLE feature_renames")
