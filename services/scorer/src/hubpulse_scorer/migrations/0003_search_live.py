"""Index for the gateway's live picks feed: it polls rows the scorer touched since its last look.

The scorer must set `updated_at = now()` in its upsert (the column default covers inserts only).

Revision ID: 0003_search
"""

from alembic import op

revision = "0003_search"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS catalog_models_updated_at ON catalog_models (updated_at)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS catalog_models_updated_at")
