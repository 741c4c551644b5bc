"""The catalog's wide columns (features, explanation) move to a side table, `catalog_details`.

Every daily update changes a model's downloads, likes and probability, which the sort indexes hold, so the
catalog_models row is rewritten with a new entry in every index (never HOT). The features and explanation
jsonb (~2 KB of a ~2.2 KB row, the model's 63 features) were rewritten along with it and made the heap that
search reads 10x wider than what it needs. `catalog_details` has only its primary key and a fillfactor that
leaves room for the next day's version on the same page (HOT: no index entry at all). /v1/picks needs
likes_7d (the hype score): it stays in catalog_models as a plain column.

Revision ID: 0005_catalog_details
"""

from alembic import op

revision = "0005_catalog_details"
down_revision = "0004_search_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE catalog_details (
            model_id       text PRIMARY KEY,
            snapshot_date  date NOT NULL,
            explanation    jsonb NOT NULL DEFAULT '[]',
            features       jsonb NOT NULL DEFAULT '{}'
        ) WITH (fillfactor = 50)
        """
    )
    op.execute(
        "INSERT INTO catalog_details (model_id, snapshot_date, explanation, features) "
        "SELECT model_id, snapshot_date, explanation, features FROM catalog_models"
    )
    op.execute("ALTER TABLE catalog_models ADD COLUMN likes_7d double precision")
    op.execute(
        "UPDATE catalog_models SET likes_7d = (features->>'likes_7d')::double precision "
        "WHERE jsonb_typeof(features->'likes_7d') = 'number'"
    )
    op.execute("ALTER TABLE catalog_models DROP COLUMN explanation, DROP COLUMN features")


def downgrade() -> None:
    op.execute(
        "ALTER TABLE catalog_models ADD COLUMN explanation jsonb NOT NULL DEFAULT '[]', "
        "ADD COLUMN features jsonb NOT NULL DEFAULT '{}'"
    )
    op.execute(
        "UPDATE catalog_models m SET explanation = d.explanation, features = d.features "
        "FROM catalog_details d WHERE d.model_id = m.model_id"
    )
    op.execute("ALTER TABLE catalog_models DROP COLUMN likes_7d")
    op.execute("DROP TABLE catalog_details")
