"""The day's catalog is built in bulk and swapped in, no longer upserted row by row into the live table.

`catalog_build` takes the scorer's catalog rows as they arrive (range-partitioned by day, a partition per day,
its primary key the only index); `catalog_days` counts each day's distinct model-days against the day's size
(the features close's `day_models`). Once a day is complete (or quiet), one replica builds the next
`catalog_models` from the live one and the day's rows (indexes after the load, analysed, vacuumed) and swaps
it in: search keeps reading yesterday's table until then (hubpulse_scorer/catalog_swap.py).

Revision ID: 0011_catalog_build
"""

from alembic import op

revision = "0011_catalog_build"
down_revision = "0010_renames"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE catalog_build (
            model_id text NOT NULL, author text, pipeline_tag text, library_name text,
            tags text[] NOT NULL DEFAULT '{}', created_at timestamptz, last_modified timestamptz,
            snapshot_date date NOT NULL, downloads bigint NOT NULL DEFAULT 0, downloads_all_time bigint,
            likes integer NOT NULL DEFAULT 0, trending_rank integer, growth_7d double precision,
            probability double precision, model_version text, label text, threshold double precision,
            likes_7d double precision,
            PRIMARY KEY (snapshot_date, model_id)
        ) PARTITION BY RANGE (snapshot_date)
        """
    )
    op.execute(
        """
        CREATE TABLE catalog_days (
            snapshot_date  date PRIMARY KEY,
            day_models     integer NOT NULL DEFAULT 0,
            built_rows     bigint NOT NULL DEFAULT 0,
            written_at     timestamptz NOT NULL DEFAULT now(),
            swapped_at     timestamptz
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE catalog_days")
    op.execute("DROP TABLE catalog_build")
