"""A model-day's features are written once: its day's `feature_stream` partition is kept, `feature_rows_final` goes.

The close used to read a day's stream, rank it, write every row again into `feature_rows_final` (a 2M-row COPY
into a table with a primary key, each day) and drop the stream: the second write of every model-day was the
close's largest statement (docs/decisions/pipeline-redesign.md, session 20). Now:

- `feature_stream` keeps each day's partition after its close: the model-days' time features, as their batches
  wrote them (a redelivered model-day twice: the latest write counts), the cross-sectional positions NaN. A
  closed day's partition is indexed by model (`<partition>_model`), so a rename's move of a model's rows reads
  its rows, not every kept day.
- The close ranks the day and publishes the final rows (hub.features.v2) without storing them; a day reopened by
  late rows is read from its partition again, earlier rows included.
- `feature_rows` (a view, as before): one row per model-day, its latest stream row, `provisional` while its day
  is open. Its values are the time features; the day-wide ranks are in the published events (and the scorer's
  details).

The final rows already written move into their days' partitions (their ranks with them) as the oldest write of
their model-days, so a later stream row of the same model-day wins, as it did over a final row.

Revision ID: 0006
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_LATEST = """
    CREATE VIEW feature_rows AS
    SELECT DISTINCT ON (s.snapshot_date, s.model_id) s.snapshot_date, s.model_id, s.feature_set, s.values,
        d.closed_at IS NULL AS provisional, s.written_at AS computed_at
    FROM feature_stream s LEFT JOIN feature_days d USING (snapshot_date)
    ORDER BY s.snapshot_date, s.model_id, s.written_at DESC
"""
# A day's stream partition, created where missing (the days whose stream the old close dropped).
_PARTITIONS = """
    DO $$
    DECLARE day date;
    BEGIN
        FOR day IN SELECT DISTINCT snapshot_date FROM feature_rows_final LOOP
            IF to_regclass(format('feature_stream_%s', to_char(day, 'YYYYMMDD'))) IS NULL THEN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF feature_stream FOR VALUES FROM (%L) TO (%L)',
                    format('feature_stream_%s', to_char(day, 'YYYYMMDD')), day, day + 1
                );
            END IF;
        END LOOP;
    END $$
"""

# The closed days' partitions indexed by model, as the close (repository.index_day) leaves them.
_INDEX_CLOSED = """
    DO $$
    DECLARE part text;
    BEGIN
        FOR part IN
            SELECT format('feature_stream_%s', to_char(snapshot_date, 'YYYYMMDD')) FROM feature_days
            WHERE closed_at IS NOT NULL
        LOOP
            IF to_regclass(part) IS NOT NULL THEN
                EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I (model_id)', part || '_model', part);
            END IF;
        END LOOP;
    END $$
"""


def upgrade() -> None:
    op.execute("DROP VIEW feature_rows")
    op.execute(_PARTITIONS)
    op.execute(
        """
        INSERT INTO feature_stream (snapshot_date, model_id, feature_set, values, provisional, written_at)
        SELECT snapshot_date, model_id, feature_set, values, provisional, '-infinity' FROM feature_rows_final
        """
    )
    op.execute("DROP TABLE feature_rows_final")
    op.execute(_INDEX_CLOSED)
    op.execute(_LATEST)


def downgrade() -> None:
    """The closed days' latest rows become final rows again, and their partitions go (as the old close left them)."""
    op.execute("DROP VIEW feature_rows")
    op.execute(
        """
        CREATE TABLE feature_rows_final (
            snapshot_date  date NOT NULL,
            model_id       text NOT NULL,
            feature_set    text NOT NULL,
            values         real[] NOT NULL,
            provisional    boolean NOT NULL,
            computed_at    timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT feature_rows_final_pkey PRIMARY KEY (snapshot_date, model_id)
        )
        """
    )
    op.execute(
        """
        INSERT INTO feature_rows_final (snapshot_date, model_id, feature_set, values, provisional, computed_at)
        SELECT DISTINCT ON (s.snapshot_date, s.model_id) s.snapshot_date, s.model_id, s.feature_set, s.values,
            false, greatest(s.written_at, d.closed_at)
        FROM feature_stream s JOIN feature_days d USING (snapshot_date)
        WHERE d.closed_at IS NOT NULL
        ORDER BY s.snapshot_date, s.model_id, s.written_at DESC
        """
    )
    op.execute(
        """
        DO $$
        DECLARE day date;
        BEGIN
            FOR day IN SELECT snapshot_date FROM feature_days WHERE closed_at IS NOT NULL LOOP
                EXECUTE format('DROP TABLE IF EXISTS %I', format('feature_stream_%s', to_char(day, 'YYYYMMDD')));
            END LOOP;
        END $$
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
