"""`catalog_details.features` becomes a vector: float64 values as `bytea`, plus the key of the names they
follow (`catalog_feature_sets`), instead of a JSON object that repeated every name in every row
(hubpulse_common.feature_vectors; docs/decisions/pipeline-redesign.md, "Session 11").

The values are big-endian binary64, which `float8send` writes: the upgrade converts the JSON in SQL; the
downgrade reads the bits back (sign, exponent, fraction; exact for every finite value) and rebuilds the JSON.
A missing value (JSON null) is NaN. A row without features keeps none (NULL).

Revision ID: 0014_feature_vectors
"""

from alembic import op

revision = "0014_feature_vectors"
down_revision = "0013_explanations_on_demand"
branch_labels = None
depends_on = None

# The same key as FeatureSet.key: md5 of the names joined by U+001F.
_KEY = "md5(array_to_string({names}, E'\\x1f'))"


def upgrade() -> None:
    op.execute("CREATE TABLE catalog_feature_sets (feature_set text PRIMARY KEY, names text[] NOT NULL)")
    op.execute(
        """
        CREATE TEMP TABLE parsed_features ON COMMIT DROP AS
        SELECT d.model_id, array_agg(e.key ORDER BY e.n) AS names,
               string_agg(float8send(CASE WHEN json_typeof(e.value) = 'number' THEN e.value::text::float8
                                          ELSE 'NaN' END), ''::bytea ORDER BY e.n) AS vector
        FROM catalog_details d, json_each(d.features::json) WITH ORDINALITY AS e(key, value, n)
        GROUP BY d.model_id
        """
    )
    op.execute(
        f"INSERT INTO catalog_feature_sets SELECT DISTINCT ON (key) key, names "  # noqa: S608 (a module constant)
        f"FROM (SELECT {_KEY.format(names='names')} AS key, names FROM parsed_features) k"
    )
    op.execute("ALTER TABLE catalog_details ADD COLUMN feature_set text, ADD COLUMN vector bytea")
    op.execute(
        f"UPDATE catalog_details d SET feature_set = {_KEY.format(names='p.names')}, vector = p.vector "  # noqa: S608
        "FROM parsed_features p WHERE p.model_id = d.model_id"
    )
    op.execute("ALTER TABLE catalog_details DROP COLUMN features")
    op.execute("ALTER TABLE catalog_details RENAME COLUMN vector TO features")


def downgrade() -> None:
    # The i-th big-endian float8 of a vector, from its bits.
    op.execute(
        """
        CREATE FUNCTION pg_temp.vector_value(v bytea, i integer) RETURNS float8 LANGUAGE sql IMMUTABLE AS $$
            SELECT CASE
                WHEN e = 2047 THEN CASE WHEN f <> 0 THEN 'NaN'::float8
                                        WHEN u < 0 THEN '-Infinity'::float8 ELSE 'Infinity'::float8 END
                WHEN e = 0 THEN sign * f::float8 * power(2::float8, -1074)
                ELSE sign * (f + 4503599627370496)::float8 * power(2::float8, e - 1075)
            END
            FROM (SELECT u, (u >> 52) & 2047 AS e, u & 4503599627370495 AS f,
                         CASE WHEN u < 0 THEN -1::float8 ELSE 1::float8 END AS sign
                  FROM (SELECT ('x' || encode(substring(v FROM i * 8 + 1 FOR 8), 'hex'))::bit(64)::bigint AS u) b) p
        $$
        """
    )
    op.execute("ALTER TABLE catalog_details ADD COLUMN json_features text")
    op.execute(
        """
        UPDATE catalog_details d SET json_features = x.features
        FROM (
            SELECT d.model_id,
                   json_object_agg(n.name, NULLIF(pg_temp.vector_value(d.features, (n.i - 1)::integer), 'NaN')
                                   ORDER BY n.i)::text AS features
            FROM catalog_details d JOIN catalog_feature_sets s USING (feature_set),
                 unnest(s.names) WITH ORDINALITY AS n(name, i)
            GROUP BY d.model_id
        ) x
        WHERE x.model_id = d.model_id
        """
    )
    op.execute("UPDATE catalog_details SET json_features = '{}' WHERE json_features IS NULL")
    op.execute("ALTER TABLE catalog_details DROP COLUMN features, DROP COLUMN feature_set")
    op.execute("ALTER TABLE catalog_details RENAME COLUMN json_features TO features")
    op.execute(
        "ALTER TABLE catalog_details ALTER COLUMN features SET DEFAULT '{}', ALTER COLUMN features SET NOT NULL, "
        "ALTER COLUMN features SET STORAGE EXTERNAL"
    )
    op.execute("DROP TABLE catalog_feature_sets")
