"""Raw daily snapshots (one row per model per day, partitioned by day) and ingestion cycles with their cursor.

Day partitions are created on demand by the writer (`repository.ensure_partition`), so no calendar of
partitions has to be kept ahead of time.

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
        CREATE TABLE snapshots (
            snapshot_date       date NOT NULL,
            model_id            text NOT NULL,
            downloads           bigint NOT NULL,
            downloads_all_time  bigint,
            likes               integer NOT NULL,
            trending_score      double precision,
            trending_rank       integer,
            pipeline_tag        text,
            library_name        text,
            author              text,
            tags                text[] NOT NULL DEFAULT '{}',
            created_at          timestamptz,
            last_modified       timestamptz,
            source              text NOT NULL,
            ingested_at         timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (snapshot_date, model_id)
        ) PARTITION BY RANGE (snapshot_date)
        """
    )
    op.execute(
        """
        CREATE TABLE ingest_cycles (
            cycle_id       bigserial PRIMARY KEY,
            source         text NOT NULL,
            status         text NOT NULL DEFAULT 'running',
            snapshot_date  date,
            next_url       text,
            pages          integer NOT NULL DEFAULT 0,
            models         bigint NOT NULL DEFAULT 0,
            retries        integer NOT NULL DEFAULT 0,
            resumes        integer NOT NULL DEFAULT 0,
            failed_pages   jsonb NOT NULL DEFAULT '[]',
            error          text,
            started_at     timestamptz NOT NULL DEFAULT now(),
            updated_at     timestamptz NOT NULL DEFAULT now(),
            finished_at    timestamptz
        )
        """
    )
    # At most one unfinished cycle per source: a restarted ingestor resumes it instead of starting another.
    op.execute("CREATE UNIQUE INDEX ingest_cycles_one_running ON ingest_cycles (source) WHERE status = 'running'")


def downgrade() -> None:
    op.execute("DROP TABLE ingest_cycles")
    op.execute("DROP TABLE snapshots")
