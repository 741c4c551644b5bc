"""The day's search read model, built in bulk and swapped in (PostgreSQL I/O, like `repository`).

Upserting every model's row into the live `catalog_models` (17 indexes) each day was most of the pipeline's
database time (docs/decisions/pipeline-redesign.md). Batches now write the day's rows into its `catalog_build`
partition; once the day is complete (as many model-days as the features close announced) or has been quiet
for `idle_s`, one replica:

1. fills `catalog_models_next` (two statements at once, each over half of the models): the day's rows (each
   model's latest, when several days are due together), plus the live rows they do not replace (models absent
   that day, or a newer day already in); `updated_at` (the live picks feed's clock) moves only for a row whose
   values changed;
2. builds the live table's indexes on it (same definitions, read from the catalog), on two connections;
3. VACUUM ANALYZE: fresh statistics and an all-visible map, so index-only search walks never visit the heap;
   beside it, on a second connection, `prepare` (the first models of each sort are explained, before search shows
   them: `explanations`);
4. swaps the two tables in one short transaction (a rename; the indexes take the live names), drops the old one;
5. then drops the build partitions older than `KEEP_BUILD_DAYS`, first keeping in `catalog_details` the details
   of the rows in them that are still live (models absent from the Hub since: hubpulse_common.catalog_details).

Search keeps reading yesterday's table until step 4. The scorer is the only writer of `catalog_models`: its
batches write the build partition, and its rename re-key (issue 14) waits for a running swap (`SWAP_LOCK`), so
no write to the live table can fall between the fill and the swap. A batch of the day that lands during a
build moves the day's `written_at` past what the build saw: the day is due again and the next swap takes it in.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from hubpulse_common.logging import get_logger
from hubpulse_scorer.repository import MODEL_COLUMNS, SWAP_LOCK, build_partition, keep_details

log = get_logger(__name__)

LIVE = "catalog_models"
NEXT = "catalog_models_next"
# Build statements run for minutes at 2M models on a loaded machine: not under the pool's 60 s command timeout.
BUILD_TIMEOUT_S = 3600.0
# A day's build rows are kept this long after a newer day was swapped in (a late batch of a recent day still
# finds its partition), then dropped with their partition.
KEEP_BUILD_DAYS = 7

_VALUES = [c for c in MODEL_COLUMNS if c != "model_id"]


# The fill runs as `FILL_PARTS` statements at once, each over the models of one hash part ($2 of $3): the
# statement is one backend's work (its hash joins, its inserts), and two take the two cores (pipeline-redesign.md,
# session 20).
_PART = "abs(hashtext(model_id)::bigint) % $3 = $2"
FILL_PARTS = 2


def _fill(source: str) -> str:
    """The next table from `source` (the build rows to take in, at most one per model) and the live rows they do
    not replace: a live row of a newer day stays. One full outer join reads each side once (two outer joins, one
    per side, hashed the whole catalog twice and, for several days, ran their DISTINCT ON twice). Both sides are
    narrowed to one hash part of the models."""
    take_build = "b.model_id IS NOT NULL AND (l.model_id IS NULL OR l.snapshot_date <= b.snapshot_date)"
    unchanged = (
        f"l.model_id IS NOT NULL AND ({', '.join(f'l.{c}' for c in _VALUES)}) "
        f"IS NOT DISTINCT FROM ({', '.join(f'b.{c}' for c in _VALUES)})"
    )
    return f"""
    INSERT INTO {NEXT} ({", ".join(MODEL_COLUMNS)}, updated_at)
    SELECT {", ".join(f"CASE WHEN t.build THEN b.{c} ELSE l.{c} END" for c in MODEL_COLUMNS)},
        CASE WHEN NOT t.build OR ({unchanged}) THEN l.updated_at ELSE clock_timestamp() END
    FROM (SELECT {", ".join(MODEL_COLUMNS)}, updated_at FROM {LIVE} WHERE {_PART}) l
        FULL JOIN ({source}) b ON b.model_id = l.model_id CROSS JOIN LATERAL (SELECT {take_build} AS build) t
"""  # noqa: S608 (identifiers are module constants)


_COLUMNS = ", ".join(MODEL_COLUMNS)
# One day: its partition's rows as they are. Several (a backfill, or days that completed together): each model's
# row of the latest of them, so one build takes them all in instead of one full build per day.
_FILL_DAY = _fill(f"SELECT {_COLUMNS} FROM catalog_build WHERE snapshot_date = ($1::date[])[1] AND {_PART}")  # noqa: S608
_FILL_DAYS = _fill(
    f"SELECT DISTINCT ON (model_id) {_COLUMNS} FROM catalog_build"  # noqa: S608
    f" WHERE snapshot_date = ANY($1::date[]) AND {_PART} ORDER BY model_id, snapshot_date DESC"
)
_DUE = """
    SELECT snapshot_date, written_at FROM catalog_days
    WHERE (swapped_at IS NULL OR written_at > swapped_at)
      AND ((day_models > 0 AND built_rows >= day_models) OR written_at < now() - make_interval(secs => $1))
    ORDER BY snapshot_date
"""
# Work on the next table (connection, its name) before it is swapped in; a failure is logged, the swap goes on.
Prepare = Callable[[asyncpg.Connection, str], Awaitable[object]]
_INDEX_DEF = re.compile(r"^(CREATE (?:UNIQUE )?INDEX) (\S+) ON (?:ONLY )?\S+ (USING .*)$", re.DOTALL)


@dataclass(frozen=True)
class LiveIndex:
    name: str
    definition: str
    primary: bool

    def on_next(self) -> str:
        """The same index on the next table, named `<name>_next` until the swap."""
        match = _INDEX_DEF.match(self.definition)
        if match is None:
            raise ValueError(f"unexpected index definition: {self.definition}")
        return f"{match[1]} {self.name}_next ON {NEXT} {match[3]}"


async def live_indexes(conn: asyncpg.Connection) -> list[LiveIndex]:
    rows = await conn.fetch(
        "SELECT i.relname AS name, pg_get_indexdef(i.oid) AS definition, x.indisprimary AS primary "
        "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = $1::regclass ORDER BY 1",
        LIVE,
    )
    return [LiveIndex(r["name"], r["definition"], r["primary"]) for r in rows]


async def _statistics_names(conn: asyncpg.Connection, table: str) -> dict[str, str]:
    """The table's statistics objects: their definition (what they are on, without the table's name) -> name."""
    rows = await conn.fetch(
        "SELECT stxname, stxkeys::text || coalesce(pg_get_statisticsobjdef_expressions(oid)::text, '') AS on_what "
        "FROM pg_statistic_ext WHERE stxrelid = $1::regclass",
        table,
    )
    return {r["on_what"]: r["stxname"] for r in rows}


async def due_days(pool: asyncpg.Pool, idle_s: float) -> list[tuple[dt.date, dt.datetime]]:
    """Days whose rows are all in (or quiet for `idle_s`) and not swapped in since their last write."""
    return [(r["snapshot_date"], r["written_at"]) for r in await pool.fetch(_DUE, idle_s)]


async def swap_day(pool: asyncpg.Pool, day: dt.date, prepare: Prepare | None = None) -> bool:
    """Build the catalog with `day`'s rows and swap it in; False when another replica holds the swap."""
    return await swap_days(pool, [day], prepare)


async def swap_days(pool: asyncpg.Pool, days: list[dt.date], prepare: Prepare | None = None) -> bool:
    """Build the catalog with the rows of `days` (each model's latest among them) and swap it in, in one build;
    False when another replica holds the swap."""
    async with pool.acquire() as conn:
        if not await conn.fetchval(f"SELECT pg_try_advisory_lock({SWAP_LOCK})"):
            return False
        try:
            await _build_and_swap(pool, conn, sorted(set(days)), prepare)
        except BaseException:
            conn.terminate()  # ends the session and its lock, whatever state the cancelled statement left
            raise
        await conn.execute(f"SELECT pg_advisory_unlock({SWAP_LOCK})")
        return True


async def _build_and_swap(
    pool: asyncpg.Pool, conn: asyncpg.Connection, days: list[dt.date], prepare: Prepare | None
) -> None:
    timings: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    started = loop.time()

    def lap(name: str) -> None:
        nonlocal started
        timings[name] = round(loop.time() - started, 2)
        started = loop.time()

    # what each day's build rows were when this build read them: a day written again later is due again
    rows_of = await conn.fetch(
        "SELECT snapshot_date, written_at FROM catalog_days WHERE snapshot_date = ANY($1::date[])", days
    )
    written = {r["snapshot_date"]: r["written_at"] for r in rows_of}
    days = [day for day in days if day in written]
    if not days:
        return
    indexes = await live_indexes(conn)
    statistics = await _statistics_names(conn, LIVE)
    options = await conn.fetchval("SELECT reloptions FROM pg_class WHERE oid = $1::regclass", LIVE)
    with_options = f" WITH ({', '.join(options)})" if options else ""
    await conn.execute(f"DROP TABLE IF EXISTS {NEXT}")
    # LIKE copies columns, NOT NULL, defaults and the statistics objects (the facets' hashes: the planner's share
    # of a task); no indexes (built after the load)
    await conn.execute(
        f"CREATE TABLE {NEXT} (LIKE {LIVE} INCLUDING DEFAULTS INCLUDING STORAGE INCLUDING STATISTICS){with_options}"
    )
    # the day's build rows were written by committed batches: what these statements see is what the swap holds
    fill = _FILL_DAY if len(days) == 1 else _FILL_DAYS
    parts = FILL_PARTS if _two_connections(pool) else 1
    statements = [(fill, (days, part, parts)) for part in range(parts)]
    # two hash joins over the whole catalog: in memory rather than in batches spilled to disk (at 2M models)
    statuses = await _on_two_connections(pool, conn, statements, {"work_mem": "128MB"})
    rows = sum(int(status.rsplit(" ", 1)[-1]) for status in statuses)
    lap("fill")
    await _build_indexes(pool, conn, indexes)
    lap("indexes")
    timings |= await _vacuum_and_prepare(pool, conn, days, prepare)
    lap("vacuum_and_prepare")  # the two at once: each one's own time is in `timings` too
    async with conn.transaction():
        # searches are short: wait for those in flight, never queue behind a stuck one for long
        await conn.execute("SET LOCAL lock_timeout = '30s'")
        await conn.execute(f"LOCK TABLE {LIVE} IN ACCESS EXCLUSIVE MODE")
        await conn.execute(f"DROP TABLE {LIVE}")
        await conn.execute(f"ALTER TABLE {NEXT} RENAME TO {LIVE}")
        for index in indexes:
            if index.primary:
                await conn.execute(
                    f"ALTER TABLE {LIVE} ADD CONSTRAINT {index.name} PRIMARY KEY USING INDEX {index.name}_next"
                )
            else:
                await conn.execute(f"ALTER INDEX {index.name}_next RENAME TO {index.name}")
        # LIKE named the copied statistics objects after the next table: they take the live names, as the indexes do
        copied = await _statistics_names(conn, LIVE)
        for on_what, name in statistics.items():
            await conn.execute(f'ALTER STATISTICS "{copied[on_what]}" RENAME TO "{name}"')
        await conn.executemany(
            "UPDATE catalog_days SET swapped_at = $2 WHERE snapshot_date = $1", list(written.items())
        )
    lap("swap")
    log.info("scorer.catalog_swapped", days=[d.isoformat() for d in days], rows=rows, seconds=timings)
    # after the swap's lock, with search serving the new catalog: what a dropped partition keeps is copied first
    try:
        async with conn.transaction():
            await _drop_old_partitions(conn, days[-1])
    except Exception:  # old build days only cost space: the next swap drops them
        log.exception("scorer.build_days_not_dropped", before=days[-1].isoformat())


async def _vacuum_and_prepare(
    pool: asyncpg.Pool, conn: asyncpg.Connection, days: list[dt.date], prepare: Prepare | None
) -> dict[str, float]:
    """VACUUM (ANALYZE) of the next table (fresh statistics and an all-visible map) and `prepare`, each timed; on
    two connections at once where the pool has room. One after the other, each left a core idle: VACUUM is one
    PostgreSQL backend, the explanations mostly the scorer's Python (docs/decisions/pipeline-redesign.md, session
    29). `prepare` reads the next table through its new indexes and writes the build rows, not the next table:
    neither waits for a lock the other holds."""
    loop = asyncio.get_running_loop()
    timings: dict[str, float] = {}

    async def vacuum(c: asyncpg.Connection) -> None:
        started = loop.time()
        await c.execute(f"VACUUM (ANALYZE) {NEXT}", timeout=BUILD_TIMEOUT_S)
        timings["vacuum"] = round(loop.time() - started, 2)

    async def prepared(c: asyncpg.Connection) -> None:
        assert prepare is not None
        started = loop.time()
        try:
            await prepare(c, NEXT)
        except Exception:  # what it adds can be done later (explanations on demand); the day's catalog cannot wait
            log.exception("scorer.catalog_prepare_failed", days=[d.isoformat() for d in days])
        timings["prepare"] = round(loop.time() - started, 2)

    if prepare is None:
        await vacuum(conn)
    else:
        await _beside(pool, conn, vacuum, prepared)  # a failed VACUUM cancels the explanations
    return timings


async def _build_indexes(pool: asyncpg.Pool, conn: asyncpg.Connection, indexes: list[LiveIndex]) -> None:
    """The live table's indexes on the next one, shared out over this connection and a second one.

    Two builds at a time already keep two cores busy: each without parallel workers, whose start, shared sort
    and merge only added work there (docs/decisions/pipeline-redesign.md, session 18). One connection alone keeps
    PostgreSQL's default."""
    settings = {"maintenance_work_mem": "256MB"}
    if _two_connections(pool):
        settings["max_parallel_maintenance_workers"] = "0"
    await _on_two_connections(pool, conn, [(index.on_next(), ()) for index in indexes], settings)


def _two_connections(pool: asyncpg.Pool) -> bool:
    """Whether the pool has room for a second connection beside the swap's own."""
    size: int = pool.get_max_size()
    return size >= 2


async def _beside(
    pool: asyncpg.Pool,
    conn: asyncpg.Connection,
    first: Callable[[asyncpg.Connection], Coroutine[Any, Any, None]],
    second: Callable[[asyncpg.Connection], Coroutine[Any, Any, None]],
) -> None:
    """`first` on this connection and `second` on another at once, where the pool has room for it; else both on
    this one, in turn. A failure cancels the other one, mid-statement possibly: its session is ended."""
    if not _two_connections(pool):
        await first(conn)
        await second(conn)
        return
    async with pool.acquire() as other:
        try:
            async with asyncio.TaskGroup() as both:
                both.create_task(first(conn))
                both.create_task(second(other))
        except BaseException:
            other.terminate()
            raise


async def _on_two_connections(
    pool: asyncpg.Pool,
    conn: asyncpg.Connection,
    statements: Sequence[tuple[str, tuple[object, ...]]],
    settings: dict[str, str],
) -> list[str]:
    """Runs the statements (a query and its arguments each) on this connection and, where the pool has room, a
    second one, each taking the next one left, under the session `settings`; their statuses, in order. A failure
    cancels the other connection's statement (and ends its session)."""
    pending = list(enumerate(statements))
    statuses: dict[int, str] = {}

    async def worker(c: asyncpg.Connection) -> None:
        if not pending:  # the second turn on one connection, or a second connection with nothing left for it
            return
        for name, value in settings.items():
            await c.execute(f"SET {name} = '{value}'")
        while pending:
            i, (query, args) = pending.pop(0)
            statuses[i] = await c.execute(query, *args, timeout=BUILD_TIMEOUT_S)
        for name in settings:
            await c.execute(f"RESET {name}")

    await _beside(pool, conn, worker, worker)
    return [statuses[i] for i in range(len(statements))]


async def _drop_old_partitions(conn: asyncpg.Connection, day: dt.date) -> None:
    keep_from = day - dt.timedelta(days=KEEP_BUILD_DAYS)
    old = await conn.fetch(
        "SELECT snapshot_date FROM catalog_days WHERE snapshot_date < $1 AND swapped_at IS NOT NULL", keep_from
    )
    for row in old:
        partition = build_partition(row["snapshot_date"])
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", partition):
            await conn.execute(keep_details(partition), timeout=BUILD_TIMEOUT_S)
        await conn.execute(f"DROP TABLE IF EXISTS {partition}")
    await conn.execute("DELETE FROM catalog_days WHERE snapshot_date < $1 AND swapped_at IS NOT NULL", keep_from)


async def swap_due_days(pool: asyncpg.Pool, idle_s: float, prepare: Prepare | None = None) -> list[dt.date]:
    """Every due day, in one build (a backfill's days would otherwise each rebuild the whole catalog)."""
    due = [day for day, _ in await due_days(pool, idle_s)]
    if due and await swap_days(pool, due, prepare):
        return due
    return []
