"""Renames the Hub made (issue 14): old name -> current name, and the day the new name was first seen.

Features marked `renamed_from` move the old name's scores and catalog rows to the new name; this table files
the old name's late features (dated before the rename) under the new name, so the old id never returns to search.

Revision ID: 0010_renames
"""

from alembic import op

revision = "0010_renames"
down_revision = "0009_library_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE score_renames (
            old_id      text PRIMARY KEY,
            new_id      text NOT NULL,
            renamed_on  date NOT NULL
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE score_renames")
