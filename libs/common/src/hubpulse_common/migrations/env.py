"""Alembic environment shared by every service.

Each service keeps only its `versions/` folder and its own version table, so services migrate
independently inside one database. Migrations are plain SQL through `op.execute`.
"""

from alembic import context

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=None,
    version_table=config.attributes["version_table"],
    transactional_ddl=True,
    # one transaction per revision: a revision can step out of it (autocommit_block) for CREATE INDEX CONCURRENTLY
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
