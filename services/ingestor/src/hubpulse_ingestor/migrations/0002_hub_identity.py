"""Models keyed by the Hub's `_id` (a rename keeps it), the renames seen, and a cycle's full report.

- `hub_models`: each Hub `_id` with the name it was last listed under.
- `model_renames`: old name -> current name (chains collapsed), so an old id's detail can redirect.
- `ingest_cycles`: models listed, rows skipped and cleaned by reason, renames, and the walk's estimate.
- createdAt 2022-03-02T23:29:04Z is the Hub's placeholder for "created before March 2022": unknown, not a date.

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
        CREATE TABLE hub_models (
            hub_id      text PRIMARY KEY,
            model_id    text NOT NULL,
            first_seen  date NOT NULL,
            last_seen   date NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX hub_models_model_id ON hub_models (model_id)")
    op.execute(
        """
        CREATE TABLE model_renames (
            old_id      text PRIMARY KEY,
            new_id      text NOT NULL,
            hub_id      text NOT NULL,
            renamed_on  date NOT NULL
        )
        """
    )
    op.execute(
        """
        ALTER TABLE ingest_cycles
            ADD COLUMN listed bigint NOT NULL DEFAULT 0,
            ADD COLUMN skipped jsonb NOT NULL DEFAULT '{}',
            ADD COLUMN cleaned jsonb NOT NULL DEFAULT '{}',
            ADD COLUMN renamed integer NOT NULL DEFAULT 0
        """
    )
    op.execute("UPDATE snapshots SET created_at = NULL WHERE created_at = '2022-03-02 23:29:04+00'")


def downgrade() -> None:
    op.execute(
        "ALTER TABLE ingest_cycles DROP COLUMN listed, DROP COLUMN skipped, DROP COLUMN cleaned, DROP COLUMN renamed"
    )
    op.execute("DROP TABLE model_renames")
    op.execute("DROP TABLE hub_models")
