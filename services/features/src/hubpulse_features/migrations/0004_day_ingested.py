"""The ingestor's day-complete signal (`hub.ingest.v1`), and how much of each day the service has streamed.

- `feature_day_signals`: the latest `DayIngested` of each day (how many models the ingestor published for it).
  A table of its own, not columns of `feature_days`: a signal read before the day's first snapshot must not make
  the day open (the idle rule would close it empty, and a later open day overtakes the earlier ones).
- `feature_days.streamed`: distinct model-days of the day in `feature_history`, counted as the batches insert
  them (a redelivered model-day is not new). The closer closes a day once `streamed` reaches the signal's count.
  Open days are counted from the history here; a day closed before this migration that reopens counts only its
  new rows, so it is closed by the idle rule as before.

Revision ID: 0004
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE feature_day_signals (
            snapshot_date  date PRIMARY KEY,
            models         integer NOT NULL,
            source         text NOT NULL,
            signalled_at   timestamptz NOT NULL,
            received_at    timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("ALTER TABLE feature_days ADD COLUMN streamed integer NOT NULL DEFAULT 0")
    op.execute(
        """
        UPDATE feature_days d SET streamed = (
            SELECT count(*) FROM feature_history h WHERE h.snapshot_date = d.snapshot_date
        ) WHERE closed_at IS NULL
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE feature_days DROP COLUMN streamed")
    op.execute("DROP TABLE feature_day_signals")
