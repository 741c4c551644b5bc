"""`feature_rows_final` without its foreign key to `feature_sets`.

The close writes a day's final rows by one COPY, and a foreign key is checked row by row (a trigger and a lookup
each): it cost the COPY as much as the rows and their primary key together (docs/decisions/pipeline-redesign.md,
session 11). The service writes only its own feature set, registered at start (`repository.ensure_feature_set`)
before any consumer runs, and `feature_stream` carries the same column without one. The primary key stays: one
final row per model-day.

Revision ID: 0005
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # created by 0001 on feature_rows; the table's rename (0003) kept the constraint's name
    op.execute("ALTER TABLE feature_rows_final DROP CONSTRAINT feature_rows_feature_set_fkey")


def downgrade() -> None:
    op.execute(
        "ALTER TABLE feature_rows_final ADD CONSTRAINT feature_rows_feature_set_fkey "
        "FOREIGN KEY (feature_set) REFERENCES feature_sets"
    )
