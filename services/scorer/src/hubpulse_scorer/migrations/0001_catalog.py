"""The catalog: the read model that search and model detail query.

The scorer keeps it current as scores arrive: one row per model with its latest stats, features and
score (catalog_models), and one row per model-day for the charts (catalog_daily). The gateway only reads.

Revision ID: 0001
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute(
        """
        CREATE TABLE catalog_models (
            model_id            text PRIMARY KEY,
            author              text,
            pipeline_tag        text,
            library_name        text,
            tags                text[] NOT NULL DEFAULT '{}',
            created_at          timestamptz,
            last_modified       timestamptz,
            snapshot_date       date NOT NULL,
            downloads           bigint NOT NULL DEFAULT 0,
            downloads_all_time  bigint,
            likes               integer NOT NULL DEFAULT 0,
            trending_rank       integer,
            growth_7d           double precision,
            probability         double precision,
            model_version       text,
            label               text,
            threshold           double precision,
            explanation         jsonb NOT NULL DEFAULT '[]',
            features            jsonb NOT NULL DEFAULT '{}',
            updated_at          timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    # Text search: trigram on the id (covers author and name, e.g. 'llama' or 'meta-llama/').
    op.execute("CREATE INDEX catalog_models_id_trgm ON catalog_models USING gin (model_id gin_trgm_ops)")
    op.execute("CREATE INDEX catalog_models_tags ON catalog_models USING gin (tags)")
    # One index per sort, with the id as tie-breaker so cursor pagination is stable.
    for column in ("probability", "downloads", "likes", "growth_7d", "created_at"):
        op.execute(f"CREATE INDEX catalog_models_{column} ON catalog_models ({column} DESC NULLS LAST, model_id)")
    op.execute("CREATE INDEX catalog_models_task ON catalog_models (pipeline_tag, probability DESC NULLS LAST)")
    op.execute("CREATE INDEX catalog_models_library ON catalog_models (library_name)")
    op.execute(
        """
        CREATE TABLE catalog_daily (
            model_id       text NOT NULL,
            snapshot_date  date NOT NULL,
            downloads      bigint NOT NULL,
            likes          integer NOT NULL,
            trending_rank  integer,
            probability    double precision,
            model_version  text,
            PRIMARY KEY (model_id, snapshot_date)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE catalog_daily")
    op.execute("DROP TABLE catalog_models")
