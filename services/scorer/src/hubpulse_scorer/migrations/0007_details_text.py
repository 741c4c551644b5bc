"""`catalog_details` keeps features and explanation as the JSON text the scorer writes, not jsonb.

Nothing queries inside them (the gateway returns them whole for one model), and jsonb costs PostgreSQL a full
parse of every number (into numeric) plus pglz on each write: ~2.4 KB of the model's 63 features per model
per day. Measured on 50k such rows (one connection, no lock, a guide only): `::jsonb` into a table 77 us a row,
text 15 us (9 us with STORAGE EXTERNAL: stored out of line without compression, which random floats barely
repay). The gateway casts the one row it reads.

Revision ID: 0007_details_text
"""

from alembic import op

revision = "0007_details_text"
down_revision = "0006_lean_keys"
branch_labels = None
depends_on = None


COLUMNS = {"explanation": "'[]'", "features": "'{}'"}


def _retype(sql_type: str, storage: str) -> None:
    for column, default in COLUMNS.items():
        op.execute(f"ALTER TABLE catalog_details ALTER COLUMN {column} DROP DEFAULT")
        op.execute(f"ALTER TABLE catalog_details ALTER COLUMN {column} TYPE {sql_type} USING {column}::{sql_type}")
        op.execute(f"ALTER TABLE catalog_details ALTER COLUMN {column} SET DEFAULT {default}")
        op.execute(f"ALTER TABLE catalog_details ALTER COLUMN {column} SET STORAGE {storage}")


def upgrade() -> None:
    _retype("text", "EXTERNAL")


def downgrade() -> None:
    _retype("jsonb", "EXTENDED")
