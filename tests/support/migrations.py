"""A service's migrations moved to one revision (upgrade or downgrade), as Alembic's command line would."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from hubpulse_common import db


def _alembic(connection: Connection, migrations: Path, version_table: str, action: str, target: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    cfg.set_main_option("version_locations", str(migrations))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["connection"] = connection
    cfg.attributes["version_table"] = version_table
    getattr(command, action)(cfg, target)


async def move(url: str, migrations: Path, version_table: str, action: str, target: str) -> None:
    """`action` ("upgrade" or "downgrade") the database at `url` to `target` of the service's `migrations`."""
    engine = create_async_engine("postgresql+asyncpg://" + url.split("://", 1)[1], poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_alembic, migrations, version_table, action, target)
            await conn.commit()
    finally:
        await engine.dispose()
