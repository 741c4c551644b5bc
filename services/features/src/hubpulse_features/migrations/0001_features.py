"""The features service's own store: each model's daily history, one feature row per model-day, open days.

`feature_history` is keyed (model_id, snapshot_date) because the hot read is "the last 14 days of these
models"; `feature_rows.values` follows the column list of its `feature_set` (a hash of FEATURE_COLUMNS),
so rows written by an older feature list stay readable.

Revision ID: 0001
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE feature_history (
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
            PRIMARY KEY (model_id, snapshot_date)
        )
        """
    )
    op.execute("CREATE INDEX feature_history_day ON feature_history (snapshot_date)")
    op.execute("CREATE TABLE feature_sets (feature_set text PRIMARY KEY, columns text[] NOT NULL)")
    op.execute(
        """
        CREATE TABLE feature_rows (
            snapshot_date  date NOT NULL,
            model_id       text NOT NULL,
            feature_set    text NOT NULL REFERENCES feature_sets,
            values         real[] NOT NULL,
            provisional    boolean NOT NULL,
            computed_at    timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (snapshot_date, model_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE feature_days (
            snapshot_date  date PRIMARY KEY,
            last_event_at  timestamptz NOT NULL DEFAULT now(),
            closed_at      timestamptz,
            models         integer
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE feature_days")
    op.execute("DROP TABLE feature_rows")
    op.execute("DROP TABLE feature_sets")
    op.execute("DROP TABLE feature_history")
