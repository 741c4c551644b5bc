"""A service's migrations moved to a given revision, up or down (what `hubpulse migrate` does, to any target)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from hubpulse_common import db


def _alembic(connection: Connection, versions: Path, version_table: str, action: str, target: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    cfg.set_main_option("version_locations", str(versions))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["connection"] = connection
    cfg.attributes["version_table"] = version_table
    getattr(command, action)(cfg, target)


async def move(url: str, versions: Path, version_table: str, action: str, target: str) -> None:
    """`action` ("upgrade" or "downgrade") of the migrations in `versions` to `target` (a revision or "head")."""
    engine = create_async_engine("postgresql+asyncpg://" + url.split("://", 1)[1], poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_alembic, versions, version_table, action, target)
            await conn.commit()
    finally:
        await engine.dispose()
