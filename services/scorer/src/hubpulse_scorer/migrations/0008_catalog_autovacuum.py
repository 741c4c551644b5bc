"""Vacuum `catalog_models` soon after each day's update, at full speed.

Search walks the keyset indexes index-only, which holds only on all-visible pages; a day's update rewrites every
row, and until a vacuum sets the visibility map again each walk visits the heap (200k, all rows just updated:
PostgreSQL CPU per uncached search 1.3 -> 9.2 ms). With the defaults (20% dead rows, cost delay 2 ms) one
autovacuum ran during the update and the rows updated after it (12k-37k of 200k, two runs) stayed dead,
below the next trigger (40k), for as long as they were watched (7 minutes in one run). With 1% and no delay,
an autovacuum ran within 5 s of the update's end and left no dead rows (one run watched to the end; a 200k
update through `write_batch`, session 3; docs/decisions/search-and-web.md).

Revision ID: 0008_catalog_autovacuum
"""

from alembic import op

revision = "0008_catalog_autovacuum"
down_revision = "0007_details_text"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE catalog_models SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 0)"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE catalog_models RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_cost_delay)")
