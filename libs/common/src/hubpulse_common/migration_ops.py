"""Operations for migrations on tables that are read while they migrate (the catalog search reads).

A plain CREATE INDEX holds a SHARE lock for the whole build (writes wait) and DROP INDEX an ACCESS EXCLUSIVE one
(reads wait too); the CONCURRENTLY forms take neither, but cannot run inside a transaction, so they run in
Alembic's autocommit block (each revision has its own transaction: hubpulse_common/migrations/env.py).
"""

from __future__ import annotations

from alembic import op


def drop_index_concurrently(name: str) -> None:
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def create_index_concurrently(name: str, definition: str, *, unique: bool = False) -> None:
    """`CREATE [UNIQUE] INDEX CONCURRENTLY name ON definition`. A build that failed half-way leaves an INVALID index
    of that name behind, so any index of that name is dropped first: running the revision again repairs it."""
    drop_index_concurrently(name)
    with op.get_context().autocommit_block():
        op.execute(f"CREATE {'UNIQUE ' if unique else ''}INDEX CONCURRENTLY {name} ON {definition}")


def replace_index_concurrently(name: str, definition: str) -> None:
    """The index `name` rebuilt as `definition` (what follows ON), under its name: built beside the old one, which
    then goes, so that readers always have one of them. A revision run again after a failure starts over."""
    create_index_concurrently(f"{name}_new", definition)
    drop_index_concurrently(name)
    op.execute(f"ALTER INDEX {name}_new RENAME TO {name}")
