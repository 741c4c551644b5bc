"""`feature_history` is partitioned by day, as `feature_stream` is.

It was one table with two indexes, its primary key (model_id, snapshot_date) and one by day. Every batch's COPY
inserted each row into both, the key's inserts landing at random places of one index that grew with every day
kept, and the close read its day through the day index. Now a day's rows go into a partition of their own
(`feature_history_YYYYMMDD`, created by the first batch of the day, `repository.ensure_day_partitions`) whose only
index is the day's own primary key, and the close reads one partition. Measured in
docs/decisions/pipeline-redesign.md (session 22).

The rows already stored are not moved: the old table becomes one partition, `feature_history_legacy`, covering
its first to its last day (attaching it reads it once; nothing is rewritten). A late row of one of those days goes
there. An empty old table is dropped.

Revision ID: 0007
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_COLUMNS = """
    model_id            text NOT NULL,
    snapshot_date       date NOT NULL,
    downloads           bigint NOT NULL,
    downloads_all_time  bigint,
    likes               bigint NOT NULL,
    trending_rank       integer,
    pipeline_tag        text,
    library_name        text,
    author              text,
    tags                text[] NOT NULL DEFAULT '{}',
    created_at          timestamptz,
    last_modified       timestamptz,
    CONSTRAINT feature_history_pkey PRIMARY KEY (model_id, snapshot_date)
"""

_ATTACH_LEGACY = """
    DO $$
    DECLARE first_day date; last_day date;
    BEGIN
        SELECT min(snapshot_date), max(snapshot_date) INTO first_day, last_day FROM feature_history_legacy;
        IF first_day IS NULL THEN
            DROP TABLE feature_history_legacy;
        ELSE
            EXECUTE format(
                'ALTER TABLE feature_history ATTACH PARTITION feature_history_legacy FOR VALUES FROM (%L) TO (%L)',
                first_day, last_day + 1
            );
        END IF;
    END $$
"""


def upgrade() -> None:
    op.execute("ALTER TABLE feature_history RENAME TO feature_history_legacy")
    op.execute(
        "ALTER TABLE feature_history_legacy RENAME CONSTRAINT feature_history_pkey TO feature_history_legacy_pkey"
    )
    op.execute("ALTER INDEX feature_history_day RENAME TO feature_history_legacy_day")
    op.execute(f"CREATE TABLE feature_history ({_COLUMNS}) PARTITION BY RANGE (snapshot_date)")
    op.execute(_ATTACH_LEGACY)


def downgrade() -> None:
    """One table again, every partition's rows in it."""
    op.execute("ALTER TABLE feature_history RENAME TO feature_history_old")
    op.execute("ALTER TABLE feature_history_old RENAME CONSTRAINT feature_history_pkey TO feature_history_old_pkey")
    op.execute(f"CREATE TABLE feature_history ({_COLUMNS})")
    op.execute("INSERT INTO feature_history SELECT * FROM feature_history_old")
    op.execute("DROP TABLE feature_history_old")
    op.execute("CREATE INDEX feature_history_day ON feature_history (snapshot_date)")
