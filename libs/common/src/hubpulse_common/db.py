"""PostgreSQL: an asyncpg pool for the hot path, Alembic for schema migrations applied at start-up."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from hubpulse_common.errors import ConfigError, UserFacingError
from hubpulse_common.logging import get_logger

log = get_logger(__name__)

_ENV_DIR = Path(__file__).parent / "migrations"
_QUERY_CANCELED = "57014"  # SQLSTATE of a statement cut by statement_timeout (lock_timeout is 55P03)


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


# Prepared statements kept per connection (asyncpg's default: 100). The gateway's search assembles a few
# hundred distinct SQL texts (sort x filters x walk window), so every one must fit, or each connection
# re-prepares nearly every uncached search (docs/decisions/search-and-web.md, "Performance").
STATEMENT_CACHE_SIZE = 2000


_PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
# PostgreSQL's infinite timestamps; asyncpg writes its naive datetime.max and .min as them, and so any time at
# their instants (microseconds since 2000-01-01), and reads them back as those naive datetimes
_PG_INFINITY, _PG_NEGATIVE_INFINITY = 0x7FFFFFFFFFFFFFFF, -0x8000000000000000
_MAX_US, _MIN_US = 252455615999999999, -63082281600000000
_INFINITY, _NEGATIVE_INFINITY = dt.datetime.max, dt.datetime.min


def timestamptz_to_pg(value: dt.datetime | dt.date) -> tuple[int]:
    """A timestamptz as PostgreSQL stores it (microseconds since 2000-01-01 UTC), for asyncpg's `tuple` format.

    asyncpg's own encoder does more per value (infinity comparisons, `astimezone`, a timedelta's fields), and three
    COPYs of a model-day carry two each (docs/decisions/pipeline-redesign.md, session 25). An aware datetime is one
    subtraction and one division here; anything else is taken as asyncpg takes it (a naive datetime or a date is
    local time)."""
    try:
        microseconds: int = (value - _PG_EPOCH) // _MICROSECOND  # type: ignore[operator]
    except TypeError:  # naive, or a date
        if not isinstance(value, dt.date):
            raise TypeError(
                f"expected a datetime.date or datetime.datetime instance, got {type(value).__name__!r}"
            ) from None
        if value == _INFINITY:
            return (_PG_INFINITY,)
        if value == _NEGATIVE_INFINITY:
            return (_PG_NEGATIVE_INFINITY,)
        if not isinstance(value, dt.datetime):
            value = dt.datetime(value.year, value.month, value.day)
        microseconds = (value.astimezone(dt.UTC) - _PG_EPOCH) // _MICROSECOND
    if microseconds == _MAX_US:
        return (_PG_INFINITY,)
    if microseconds == _MIN_US:
        return (_PG_NEGATIVE_INFINITY,)
    return (microseconds,)


def timestamptz_from_pg(value: tuple[int]) -> dt.datetime:
    """What asyncpg's own decoder returns: an aware UTC datetime, or its naive infinity datetimes."""
    (microseconds,) = value
    if microseconds == _PG_INFINITY:
        return _INFINITY
    if microseconds == _PG_NEGATIVE_INFINITY:
        return _NEGATIVE_INFINITY
    return _PG_EPOCH + dt.timedelta(microseconds=microseconds)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec(
        "timestamptz", encoder=timestamptz_to_pg, decoder=timestamptz_from_pg, schema="pg_catalog", format="tuple"
    )


async def create_pool(
    url: str, *, min_size: int = 1, max_size: int = 10, timeout_s: float = 10.0, application_name: str = "hubpulse"
) -> asyncpg.Pool:
    """Open a pool or raise `ConfigError` naming HUBPULSE_DATABASE_URL (never a traceback).

    `application_name`: what `pg_stat_activity` (and the server's log lines) call these connections; each service
    passes its own name, so an operator sees which service a session or a slow statement belongs to."""
    try:
        pool = await asyncio.wait_for(
            asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                init=_init_connection,
                command_timeout=60,
                statement_cache_size=STATEMENT_CACHE_SIZE,
                server_settings={"application_name": application_name},
            ),
            timeout_s,
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, ValueError) as exc:
        raise ConfigError(
            f"HUBPULSE_DATABASE_URL={redact(url)}: cannot connect ({exc or type(exc).__name__})"
        ) from None
    assert pool is not None
    return pool


def _sqlalchemy_url(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"postgresql+asyncpg://{rest}" if scheme in ("postgres", "postgresql") else url


def _config(connection: Connection, versions_dir: Path, version_table: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_ENV_DIR))
    cfg.set_main_option("version_locations", str(versions_dir))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["connection"] = connection
    cfg.attributes["version_table"] = version_table
    return cfg


def _upgrade(connection: Connection, versions_dir: Path, version_table: str) -> None:
    command.upgrade(_config(connection, versions_dir, version_table), "heads")


def _revisions(connection: Connection, versions_dir: Path, version_table: str) -> tuple[set[str], set[str]]:
    """(the revisions the database is at, the heads this code's migrations reach)."""
    script = ScriptDirectory.from_config(_config(connection, versions_dir, version_table))
    context = MigrationContext.configure(connection, opts={"version_table": version_table})
    return set(context.get_current_heads()), set(script.get_heads())


# How a database should be created (compose's POSTGRES_INITDB_ARGS does it for the cluster): ids sorted by code point.
CODE_POINT_DATABASE = "CREATE DATABASE hubpulse TEMPLATE template0 LOCALE_PROVIDER builtin BUILTIN_LOCALE 'C.UTF-8'"


def sorts_by_code_point(database: dict[str, Any]) -> bool:
    """Whether a database's default collation (its `pg_database` row) compares text by code point, without a
    locale: the builtin provider (C, C.UTF-8), or libc's C and POSIX. Any other makes each comparison of ids in
    an index a locale's (`strcoll`, ICU), several times the work (docs/decisions/pipeline-redesign.md, session
    26)."""
    provider = database.get("datlocprovider")
    return provider == "b" or (provider == "c" and database.get("datcollate") in ("C", "POSIX"))


# the row as JSON: its columns differ between PostgreSQL versions (datlocale is 17's)
_DATABASE_ROW = "SELECT to_jsonb(d) FROM pg_database d WHERE datname = current_database()"


async def _warn_on_locale_collation(conn: AsyncConnection) -> None:
    """A line in the migration's log when the database compares text through a locale (`sorts_by_code_point`).

    Nothing is changed: a database's default collation is fixed when it is created, and moving the columns to
    another rebuilds every index on them, over the whole history, under lock: the operator chooses when."""
    # SQLAlchemy's asyncpg dialect decodes jsonb
    database: dict[str, Any] = (await conn.execute(text(_DATABASE_ROW))).scalar_one()
    if sorts_by_code_point(database):
        return
    provider = {"c": "libc", "i": "icu"}.get(database.get("datlocprovider") or "", "unknown")
    log.warning(
        "db.collation_by_locale",
        provider=provider,
        collation=database.get("datlocale") or database.get("datcollate"),
        why="every comparison of ids in an index goes through the locale: index builds and inserts cost more CPU",
        fix=f"{CODE_POINT_DATABASE}, then pg_dump / pg_restore the data into it",
    )


class MigrationTimeoutError(UserFacingError):
    """A migration statement ran past HUBPULSE_MIGRATION_STATEMENT_TIMEOUT_S and PostgreSQL cancelled it."""


class SchemaBehindError(ConfigError):
    """The database is not at the schema this code needs, and this process was told not to migrate it."""


@asynccontextmanager
async def _connection(url: str) -> AsyncIterator[AsyncConnection]:
    """A SQLAlchemy connection for Alembic; failing to connect at all is a `ConfigError` naming the URL."""
    if url.split("://", 1)[0] not in ("postgres", "postgresql"):
        raise ConfigError(
            f"HUBPULSE_DATABASE_URL={redact(url)}: not a PostgreSQL URL (postgresql://user:password@host:port/db)"
        )
    engine = create_async_engine(_sqlalchemy_url(url), poolclass=NullPool)
    try:
        try:
            conn = await engine.connect()
        except (OSError, TimeoutError, DBAPIError) as exc:
            reason = getattr(exc, "orig", None) or exc
            raise ConfigError(f"HUBPULSE_DATABASE_URL={redact(url)}: cannot connect ({reason})") from None
        try:
            yield conn
        finally:
            await conn.close()
    finally:
        await engine.dispose()


async def migrate(
    url: str,
    versions_dir: Path,
    version_table: str,
    *,
    lock_timeout_s: float = 5.0,
    statement_timeout_s: float = 900.0,
) -> None:
    """Apply a service's pending migrations. Idempotent; concurrent callers serialise on an advisory lock.

    The lock is the service's own (keyed on its version table), so one service's long migration does not hold
    up the others. Every migration runs in its own transaction (an index built CONCURRENTLY needs to be outside
    one) with `lock_timeout`: DDL that would queue behind a long query gives up instead of blocking every
    reader queued behind it; run it again (the Kubernetes Job retries). `statement_timeout` (0: none) cuts a
    statement that runs away (a rewrite of a table larger than planned) before the rollout's own deadline, as
    `MigrationTimeoutError`: its revision's transaction is rolled back, and an index build left INVALID is
    rebuilt by the next run (`migration_ops.create_index_concurrently`).

    A URL that is not PostgreSQL's or a database that refuses the connection (down, wrong password, no such
    database) is a `ConfigError` naming HUBPULSE_DATABASE_URL; an error once connected is a migration's own.
    """
    async with _connection(url) as conn:
        key = {"key": version_table}
        await conn.execute(text("SELECT pg_advisory_lock(hashtext(:key))"), key)
        # session settings outlive the transaction that set them; commit so Alembic opens its own
        await conn.execute(text(f"SET lock_timeout = '{int(lock_timeout_s * 1000)}ms'"))
        await conn.execute(text(f"SET statement_timeout = '{int(statement_timeout_s * 1000)}ms'"))
        await _warn_on_locale_collation(conn)
        await conn.commit()
        try:
            await conn.run_sync(_upgrade, versions_dir, version_table)
            await conn.commit()
        except DBAPIError as exc:
            await conn.rollback()
            if getattr(exc.orig, "sqlstate", None) == _QUERY_CANCELED and "statement timeout" in str(exc.orig):
                statement = " ".join(str(exc.statement).split())
                raise MigrationTimeoutError(
                    f"a migration of {version_table} ran longer than HUBPULSE_MIGRATION_STATEMENT_TIMEOUT_S "
                    f"({statement_timeout_s:g} s) and PostgreSQL cancelled it: {statement[:200]}. Its revision was "
                    "rolled back; raise the setting for this table's size and run the migration step again"
                ) from None
            raise
        except BaseException:
            # the unlock below needs a live transaction; without this it fails and hides the migration's error
            await conn.rollback()
            raise
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(hashtext(:key))"), key)
            await conn.commit()


async def check_schema(url: str, versions_dir: Path, version_table: str, *, service: str) -> None:
    """Raise `SchemaBehindError` unless the database is at this code's migration heads (no DDL is run)."""
    async with _connection(url) as conn:
        current, heads = await conn.run_sync(_revisions, versions_dir, version_table)
    if current != heads:
        raise SchemaBehindError(
            f"the database schema of {service} is at {', '.join(sorted(current)) or 'no revision'}, this version "
            f"needs {', '.join(sorted(heads))}: run `hubpulse migrate {service}` (Kubernetes: the hubpulse-migrate "
            "Job; compose: the migrate service) or set HUBPULSE_MIGRATE_ON_START=true"
        )


async def ping(pool: asyncpg.Pool) -> None:
    await pool.fetchval("SELECT 1")


def record_to_dict(record: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(record) if record is not None else None
