"""The per-task and per-library keyset indexes hold only the rows that have a task (a library).

A walk narrowed to a task or a library names its value, so the index entries of rows without one are never read;
yet each daily swap sorted and wrote them into all ten indexes (the swap copies the live definitions, predicate
included). With the synthetic Hub's shares (16 % without a task, 14 % without a library), the ten builds took 14-26 %
less CPU on 1M rows and the indexes 14 % less space (docs/decisions/pipeline-redesign.md, session 31). The
planner uses them for `hashtext(pipeline_tag) = hashtext($1)`: a strict function of the column proves it not null.

PostgreSQL reads no statistics from a partial index's expressions, and those of the full indexes were what it
estimated a task's share from (without them, any task was 0.5 % of the catalog, and a walk's plan followed from
that). Expression statistics on the two hashes take their place; the swap copies them with the table.

Revision ID: 0020_facet_keys_partial
"""

import sqlalchemy as sa
from alembic import op

from hubpulse_common.catalog_keys import FACETS, facet_key
from hubpulse_common.migration_ops import replace_index_concurrently

revision = "0020_facet_keys_partial"
down_revision = "0019_daily_by_day"
branch_labels = None
depends_on = None

_PREFIX = {"pipeline_tag": "catalog_models_task_key_", "library_name": "catalog_models_library_key_"}


def _rebuild(partial: bool) -> None:
    """Each facet index built again (concurrently: search reads the table throughout) with or without the predicate,
    under its own name."""
    for column in FACETS:
        predicate = f" WHERE ({column} IS NOT NULL)"
        rows = op.get_bind().execute(
            sa.text(
                "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
                "WHERE x.indrelid = 'catalog_models'::regclass AND i.relname ~ :pattern ORDER BY 1"
            ),
            {"pattern": f"^{_PREFIX[column]}"},
        )
        for name, definition in rows.fetchall():
            body = definition.split(" ON ", 1)[1].removesuffix(predicate)
            replace_index_concurrently(name, body + (predicate if partial else ""))


STATISTICS = {"pipeline_tag": "catalog_models_task_hash", "library_name": "catalog_models_library_hash"}


def upgrade() -> None:
    for column, name in STATISTICS.items():
        op.execute(f"CREATE STATISTICS IF NOT EXISTS {name} ON ({facet_key(column)}) FROM catalog_models")
    op.execute("ANALYZE catalog_models")
    _rebuild(partial=True)


def downgrade() -> None:
    _rebuild(partial=False)
    for name in STATISTICS.values():
        op.execute(f"DROP STATISTICS IF EXISTS {name}")
    op.execute("ANALYZE catalog_models")
