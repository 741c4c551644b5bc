"""Migrations against real PostgreSQL: applied once, idempotent, safe when services start together."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from hubpulse_common.db import migrate

REVISION_1 = """
from alembic import op
revision = "0001"
down_revision = None
branch_labels = None
depends_on = None
def upgrade() -> None:
    op.execute("CREATE TABLE widget (id text PRIMARY KEY, n int NOT NULL)")
def downgrade() -> None:
    op.execute("DROP TABLE widget")
"""

REVISION_2 = """
from alembic import op
revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None
def upgrade() -> None:
    op.execute("ALTER TABLE widget ADD COLUMN label text")
def downgrade() -> None:
    op.execute("ALTER TABLE widget DROP COLUMN label")
"""


async def test_migrations_apply_once_and_concurrently(database_url: str, tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "0001_widget.py").write_text(REVISION_1)

    # Three services starting at once must not race on the same DDL.
    await asyncio.gather(*(migrate(database_url, versions, "alembic_version_widgets") for _ in range(3)))
    (versions / "0002_label.py").write_text(REVISION_2)
    await migrate(database_url, versions, "alembic_version_widgets")
    await migrate(database_url, versions, "alembic_version_widgets")  # idempotent

    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT version_num FROM alembic_version_widgets") == "0002"
        columns = {
            r["column_name"]
            for r in await conn.fetch("SELECT column_name FROM information_schema.columns WHERE table_name = 'widget'")
        }
        assert columns == {"id", "n", "label"}
    finally:
        await conn.close()


async def test_unreachable_database_names_the_setting(tmp_path: Path) -> None:
    from hubpulse_common.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        await migrate("postgresql://postgres:secret@127.0.0.1:1/none", tmp_path, "v")
    assert "HUBPULSE_DATABASE_URL" in str(caught.value)
    assert "secret" not in str(caught.value)


async def test_a_url_that_reaches_no_database_names_the_setting(database_url: str, tmp_path: Path) -> None:
    from sqlalchemy.exc import DBAPIError

    from hubpulse_common.errors import ConfigError

    wrong_database = database_url.rsplit("/", 1)[0] + "/no_such_database"
    for url, reason in (
        ("mysql://root:secret@127.0.0.1/db", "not a PostgreSQL URL"),
        (wrong_database, "no_such_database"),
    ):
        with pytest.raises(ConfigError) as caught:
            await migrate(url, tmp_path, "v")
        assert str(caught.value).startswith("HUBPULSE_DATABASE_URL=")
        assert reason in str(caught.value)
        assert "secret" not in str(caught.value)

    # once connected, a broken migration is the migration's error, not a configuration one
    (tmp_path / "0001_bad.py").write_text(REVISION_1.replace("CREATE TABLE widget", "CREATE TABL widget"))
    with pytest.raises(DBAPIError, match="syntax error"):
        await migrate(database_url, tmp_path, "alembic_version_bad")
