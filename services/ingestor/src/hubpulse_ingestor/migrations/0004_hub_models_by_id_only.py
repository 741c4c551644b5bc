"""`hub_models` keeps its primary key (the Hub's `_id`) only: the index by name goes.

Nothing reads identities by name through it: a batch's identities are looked up by `_id`, a rename updates by
`_id`, and a resumed cycle joins the whole day's snapshots to the table (a hash join). Yet every new identity
went into it too, at a random place (names are not in the walk's order, `_id`s are: they begin with their
creation time). A first walk of the whole Hub writes every identity: 400k new identities cost PostgreSQL 6.4-6.6
CPU-s without it and 8.5-9.4 with it; known ones cost the same (docs/decisions/pipeline-redesign.md, session 31).

Revision ID: 0004
"""

from hubpulse_common.migration_ops import create_index_concurrently, drop_index_concurrently

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    drop_index_concurrently("hub_models_model_id")


def downgrade() -> None:
    create_index_concurrently("hub_models_model_id", "hub_models (model_id)")
