"""Migrations against real PostgreSQL: applied once, idempotent, safe when services start together."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from conftest import Store, fresh_database

from hubpulse_common import db
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


CONCURRENT_INDEX = """
from hubpulse_common.migration_ops import create_index_concurrently
revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None
def upgrade() -> None:
    create_index_concurrently("widget_n", "widget (n)")
def downgrade() -> None:
    pass
"""


async def test_an_index_on_a_read_table_is_built_concurrently(database_url: str, tmp_path: Path) -> None:
    """CREATE INDEX CONCURRENTLY cannot run in a transaction: each revision gets its own, left for the build."""
    (tmp_path / "0001_widget.py").write_text(REVISION_1)
    (tmp_path / "0002_index.py").write_text(CONCURRENT_INDEX)
    await migrate(database_url, tmp_path, "alembic_version_widgets")
    conn = await asyncpg.connect(database_url)
    try:
        valid = await conn.fetchval("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('widget_n')")
        assert valid is True
    finally:
        await conn.close()


async def test_ddl_behind_a_long_reader_gives_up_after_the_lock_timeout(database_url: str, tmp_path: Path) -> None:
    from sqlalchemy.exc import DBAPIError

    (tmp_path / "0001_widget.py").write_text(REVISION_1)
    await migrate(database_url, tmp_path, "alembic_version_widgets")
    (tmp_path / "0002_label.py").write_text(REVISION_2)
    reader = await asyncpg.connect(database_url)
    try:
        async with reader.transaction():
            await reader.fetch("SELECT * FROM widget")  # holds ACCESS SHARE until the transaction ends
            started = asyncio.get_running_loop().time()
            with pytest.raises(DBAPIError, match="lock timeout"):
                await asyncio.wait_for(
                    migrate(database_url, tmp_path, "alembic_version_widgets", lock_timeout_s=0.3), timeout=30
                )
            assert asyncio.get_running_loop().time() - started < 10
    finally:
        await reader.close()
    await migrate(database_url, tmp_path, "alembic_version_widgets")  # the retry, once the reader is gone
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT version_num FROM alembic_version_widgets") == "0002"
    finally:
        await conn.close()


# a rewrite that runs long: revision 0002 plus an UPDATE that sleeps
SLOW_REWRITE = REVISION_2.replace(
    'ADD COLUMN label text")',
    'ADD COLUMN label text")\n    op.execute("UPDATE widget SET label = \'x\' WHERE pg_sleep(5) IS NOT NULL")',
)


async def test_a_runaway_migration_statement_is_cut_with_a_clear_error(database_url: str, tmp_path: Path) -> None:
    from hubpulse_common.db import MigrationTimeoutError

    (tmp_path / "0001_widget.py").write_text(REVISION_1)
    await migrate(database_url, tmp_path, "alembic_version_slow")
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("INSERT INTO widget VALUES ('a', 1) ON CONFLICT DO NOTHING")
        (tmp_path / "0002_slow.py").write_text(SLOW_REWRITE)
        started = asyncio.get_running_loop().time()
        with pytest.raises(MigrationTimeoutError) as caught:
            await migrate(database_url, tmp_path, "alembic_version_slow", statement_timeout_s=0.5)
        assert asyncio.get_running_loop().time() - started < 4
        message = str(caught.value)
        assert "HUBPULSE_MIGRATION_STATEMENT_TIMEOUT_S (0.5 s)" in message
        assert "UPDATE widget SET label" in message  # which statement
        # the revision was rolled back as a whole: no column, still at 0001
        assert await conn.fetchval("SELECT version_num FROM alembic_version_slow") == "0001"
        columns = await conn.fetch("SELECT column_name FROM information_schema.columns WHERE table_name = 'widget'")
        assert "label" not in {row["column_name"] for row in columns}
    finally:
        await conn.close()


async def test_a_service_that_does_not_migrate_checks_the_schema(database_url: str, tmp_path: Path) -> None:
    from hubpulse_common.db import SchemaBehindError, check_schema

    (tmp_path / "0001_widget.py").write_text(REVISION_1)
    with pytest.raises(SchemaBehindError, match=r"at no revision, this version needs 0001: run `hubpulse migrate w`"):
        await check_schema(database_url, tmp_path, "alembic_version_w", service="w")
    await migrate(database_url, tmp_path, "alembic_version_w")
    await check_schema(database_url, tmp_path, "alembic_version_w", service="w")
    (tmp_path / "0002_label.py").write_text(REVISION_2)
    with pytest.raises(SchemaBehindError, match="at 0001, this version needs 0002"):
        await check_schema(database_url, tmp_path, "alembic_version_w", service="w")


async def test_hubpulse_migrate_applies_every_service_and_lets_them_start_checking_only(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from hubpulse.cli import app
    from hubpulse_common.db import SchemaBehindError
    from hubpulse_common.resources import migrate_or_check
    from hubpulse_common.service import migrations_dir
    from hubpulse_scorer.settings import ScorerSettings

    monkeypatch.setenv("HUBPULSE_DATABASE_URL", database_url)
    monkeypatch.setenv("HUBPULSE_MIGRATE_ON_START", "false")
    settings = ScorerSettings()
    with pytest.raises(SchemaBehindError, match="hubpulse migrate scorer"):
        await migrate_or_check(settings, migrations_dir("hubpulse_scorer"))
    result = await asyncio.to_thread(CliRunner().invoke, app, ["migrate"])
    assert result.exit_code == 0, result.output
    assert "migrated: auth, ingestor, features, scorer" in result.output
    await migrate_or_check(settings, migrations_dir("hubpulse_scorer"))  # current: the check passes
    conn = await asyncpg.connect(database_url)
    try:
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables")}
    finally:
        await conn.close()
    assert {f"alembic_version_{s}" for s in ("auth", "ingestor", "features", "scorer")} <= tables
    assert "catalog_models" in tables
    bad = await asyncio.to_thread(CliRunner().invoke, app, ["migrate", "gateway"])
    assert bad.exit_code == 2


async def test_a_checking_service_waits_for_the_migration_step(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hubpulse_common.resources import migrate_or_check
    from hubpulse_common.service import migrations_dir
    from hubpulse_features.settings import FeaturesSettings

    monkeypatch.setenv("HUBPULSE_DATABASE_URL", database_url)
    monkeypatch.setenv("HUBPULSE_MIGRATE_ON_START", "false")
    monkeypatch.setenv("HUBPULSE_SCHEMA_WAIT_S", "60")
    versions = migrations_dir("hubpulse_features")
    waiting = asyncio.create_task(migrate_or_check(FeaturesSettings(), versions))
    await asyncio.sleep(1.0)
    assert not waiting.done()  # the pod waits, it does not crash-loop
    await migrate_or_check(FeaturesSettings(), versions, migrate=True)  # the Job
    await asyncio.wait_for(waiting, timeout=30)


class _Recorder:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, object]]] = []

    def warning(self, event: str, **fields: object) -> None:
        self.warnings.append((event, fields))


@pytest.mark.parametrize(
    ("locale", "warned"),
    [
        ("", False),  # the test cluster's default: builtin C.UTF-8, as docker-compose.yml creates it
        ("LOCALE_PROVIDER libc LOCALE 'C'", False),
        # libc's C.utf8 sorts by code point too, but through strcoll, as any libc locale but C (en_US.utf8 is the
        # postgres image's, not on every machine)
        ("LOCALE_PROVIDER libc LOCALE 'C.utf8'", True),
    ],
)
async def test_a_database_that_compares_text_through_a_locale_is_named_in_the_migration_log(
    postgres: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, locale: str, warned: bool
) -> None:
    url = await fresh_database(postgres, f"t_collation_{int(warned)}_{len(locale)}", f"TEMPLATE template0 {locale}")
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "0001_widget.py").write_text(REVISION_1)
    recorder = _Recorder()
    monkeypatch.setattr(db, "log", recorder)

    await migrate(url, versions, "alembic_version_widgets")

    expected = [("db.collation_by_locale", "C.utf8")] if warned else []
    assert [(event, fields["collation"]) for event, fields in recorder.warnings] == expected
    if warned:
        assert db.CODE_POINT_DATABASE in str(recorder.warnings[0][1]["fix"])
    conn = await asyncpg.connect(url)
    try:
        provider = await conn.fetchval("SELECT datlocprovider FROM pg_database WHERE datname = current_database()")
    finally:
        await conn.close()
    assert provider == (b"c" if locale else b"b")
