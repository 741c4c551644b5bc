"""Features written once per day: the day's stream, the final rows, and `feature_rows` as a view over both.

- `feature_stream`: a batch appends its model-days' time features (plain COPY; no index, no upsert) to its day's
  partition; a redelivered or re-ingested model-day is appended again, and the latest write wins at the close.
- `feature_rows_final` (the old `feature_rows` table, renamed with its rows): the day's close ranks the day,
  writes its rows here once and drops the day's partition, in one transaction.
- `feature_rows` (a view): one row per model-day, final where its day closed, else the stream's latest row
  (provisional), so that readers of the old table keep reading every model-day.

Revision ID: 0003
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE feature_rows RENAME TO feature_rows_final")
    op.execute("ALTER INDEX feature_rows_pkey RENAME TO feature_rows_final_pkey")
    op.execute(
        """
        CREATE TABLE feature_stream (
            snapshot_date  date NOT NULL,
            model_id       text NOT NULL,
            feature_set    text NOT NULL,
            values         real[] NOT NULL,
            provisional    boolean NOT NULL,
            written_at     timestamptz NOT NULL DEFAULT now()
        ) PARTITION BY RANGE (snapshot_date)
        """
    )
    op.execute(
        """
        CREATE VIEW feature_rows AS
        SELECT snapshot_date, model_id, feature_set, values, provisional, computed_at FROM feature_rows_final
        UNION ALL
        SELECT * FROM (
            SELECT DISTINCT ON (snapshot_date, model_id)
                snapshot_date, model_id, feature_set, values, true AS provisional, written_at AS computed_at
            FROM feature_stream s
            WHERE NOT EXISTS (
                SELECT FROM feature_rows_final f WHERE f.snapshot_date = s.snapshot_date AND f.model_id = s.model_id
            )
            ORDER BY snapshot_date, model_id, written_at DESC
        ) AS streamed
        """
    )


def downgrade() -> None:
    op.execute("DROP VIEW feature_rows")
    # open days' streamed rows go back as the provisional rows the old close finalises
    op.execute(
        """
        INSERT INTO feature_rows_final (snapshot_date, model_id, feature_set, values, provisional, computed_at)
        SELECT DISTINCT ON (snapshot_date, model_id) snapshot_date, model_id, feature_set, values, true, written_at
        FROM feature_stream ORDER BY snapshot_date, model_id, written_at DESC
        ON CONFLICT (snapshot_date, model_id) DO UPDATE SET feature_set = EXCLUDED.feature_set,
            values = EXCLUDED.values, provisional = true, computed_at = EXCLUDED.computed_at
        """
    )
    op.execute("DROP TABLE feature_stream")
    op.execute("ALTER INDEX feature_rows_final_pkey RENAME TO feature_rows_pkey")
    op.execute("ALTER TABLE feature_rows_final RENAME TO feature_rows")
