"""PostgreSQL I/O of the features service.

Per batch: the history upserted (COPY into a staging table, one upsert) and the batch's time features appended to
its day's partition of `feature_stream` (one plain COPY), the one write of a model-day's features. Per day, at its
close: the day read once for its ranks and once for its rows (each one COPY, streamed), its partition indexed by
model and the day marked closed; the partition stays (a day reopened by late rows is read from it again).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import io
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, NamedTuple

import asyncpg
import pandas as pd

from hubpulse_common import renames
from hubpulse_common.events import DayIngested
from hubpulse_common.features import CROSS_INPUT_COLUMNS, FEATURE_COLUMNS, HISTORY_WINDOW_DAYS
from hubpulse_features.service import (
    BATCH_WINDOW_COLUMNS,
    FEATURE_ROW_COLUMNS,
    FEATURE_SET,
    HISTORY_COLUMNS,
    STAT_COLUMNS,
    TIME_FEATURE_COLUMNS,
    Record,
    feature_rows_copy,
    typed,
)

_POSITION = {name: i + 1 for i, name in enumerate(FEATURE_COLUMNS)}  # PostgreSQL arrays are 1-based

# trending_rank is also a feature: the day's frame takes it from the feature values
_DAY_STATS = [c for c in STAT_COLUMNS if c != "tags" and c not in FEATURE_COLUMNS]

# ... and how many model-days of each day it added (an updated row has the upsert's xid as xmax, a new one 0)
_UPSERT_HISTORY = f"""
    WITH upserted AS (
        INSERT INTO feature_history ({", ".join(HISTORY_COLUMNS)})
        SELECT {", ".join(HISTORY_COLUMNS)} FROM feature_history_staging
        ON CONFLICT (model_id, snapshot_date) DO UPDATE SET {", ".join(f"{c} = EXCLUDED.{c}" for c in STAT_COLUMNS)}
        RETURNING snapshot_date, xmax = 0 AS inserted
    )
    SELECT snapshot_date, count(*) FILTER (WHERE inserted) AS added FROM upserted GROUP BY snapshot_date
"""  # noqa: S608 (identifiers are module constants, values are bound parameters)
_DAY_OF_RECORD = HISTORY_COLUMNS.index("snapshot_date")
_SELECT_WINDOW = f"""
    SELECT {", ".join(BATCH_WINDOW_COLUMNS)} FROM feature_history
    WHERE model_id = ANY($1::text[]) AND snapshot_date BETWEEN $2 AND $3
"""  # noqa: S608 (identifiers are module constants, values are bound parameters)
# A day as its close reads it: for each model, the latest time features written (the stream's last append wins
# over a redelivered or re-ingested one, and over the final row of a day closed before session 20's migration),
# with the model-day's stats from the history. A hash anti-join over the stream's keys finds the superseded rows:
# the DISTINCT ON it replaces sorted the day's wide rows, spilling to disk at 2M models (pipeline-redesign.md,
# session 20). `ctid` breaks a tie of one transaction's two writes.
_DAY_SOURCE = """
    FROM feature_stream f JOIN feature_history h ON h.model_id = f.model_id AND h.snapshot_date = $1
    WHERE f.snapshot_date = $1 AND f.feature_set = $2 AND NOT EXISTS (
        SELECT FROM feature_stream n WHERE n.snapshot_date = $1 AND n.feature_set = $2 AND n.model_id = f.model_id
            AND (n.written_at, n.ctid) > (f.written_at, f.ctid)
    )
"""


def _values(columns: Sequence[str]) -> str:
    # NaN as NULL: an empty CSV cell, so pandas' C parser reads the column as floats at once (the text
    # 'NaN' made it an object column that to_numeric then parsed in Python).
    return ", ".join(f"NULLIF(f.values[{_POSITION[c]}], 'NaN') AS \"{c}\"" for c in columns)


_SELECT_DAY_ROWS = f"""
    SELECT h.snapshot_date, f.model_id, {", ".join(f"h.{c}" for c in _DAY_STATS)},
        array_to_json(array_remove(h.tags, NULL)) AS tags, {_values(TIME_FEATURE_COLUMNS)} {_DAY_SOURCE}
"""
# What the day-wide ranks read: the task, downloads and the time features they rank (a 2M-model day must
# fit in memory).
_SELECT_RANK_INPUTS = f"""
    SELECT h.snapshot_date, f.model_id, h.pipeline_tag, h.downloads, {_values(CROSS_INPUT_COLUMNS)} {_DAY_SOURCE}
"""
# The close reads a day as one COPY, parsed a slice of about this many bytes of CSV at a time (bounded memory:
# a slice's frames and events take several times its CSV; docs/decisions/pipeline-redesign.md).
CLOSE_SLICE_BYTES = 8 << 20
# The close's hash tables (the stream's keys, the history's day) stay in memory instead of spilling to disk.
_CLOSE_WORK_MEM = "256MB"
# A day's stream partition is read before autovacuum has counted it: the planner may take it for a few rows and
# join the history by one index lookup per model of the day (a nested loop). A day's close reads the whole day,
# so the history's day is read once and hashed instead.
_CLOSE_READ_SETTINGS = {"work_mem": _CLOSE_WORK_MEM, "enable_nestloop": "off"}
# One read of a day for the close (rank inputs, or the rows), from its first byte to its last slice handed on.
CLOSE_READ_TIMEOUT_S = 3600.0


async def ensure_feature_set(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO feature_sets (feature_set, columns) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        FEATURE_SET,
        list(FEATURE_COLUMNS),
    )


async def _staging(conn: asyncpg.Connection, staging: str, like: str) -> None:
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {like} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )


# A rename moves both per-model tables (hubpulse_common.renames); late rows of an old name are filed by this one.
RENAMES = "feature_renames"
_RENAMED_TABLES = (
    renames.Keyed("feature_history", ("snapshot_date",)),
    renames.Keyed("feature_stream", ("snapshot_date",)),
)


async def follow_renames(
    conn: asyncpg.Connection, marked: Sequence[renames.Rename], model_ids: Sequence[str]
) -> dict[str, renames.Rename]:
    """Applies a batch's renames to the history and feature rows; the aliases of its model ids. In a transaction."""
    return await renames.follow(conn, RENAMES, marked, _RENAMED_TABLES, model_ids)


async def renamed_on(conn: asyncpg.Connection, day: dt.date) -> dict[str, str]:
    """new name -> old name of the models first seen under their new name on `day`."""
    return await renames.renamed_on(conn, RENAMES, day)


async def upsert_history(conn: asyncpg.Connection, records: Sequence[Record]) -> dict[dt.date, int]:
    """Idempotent on (model_id, snapshot_date); call inside a transaction. Returns how many model-days of each
    day were new to the history (what `touch_days` counts as streamed).

    A batch's model-days are new to the history but for a redelivered batch or a second walk of the day: the
    rows go in by one COPY (in a savepoint), and only when it meets a model-day already there are they staged
    and upserted instead (a second pass over every row: docs/decisions/pipeline-redesign.md, session 9)."""
    try:
        async with conn.transaction():
            await conn.copy_records_to_table("feature_history", records=records, columns=list(HISTORY_COLUMNS))
        return dict(collections.Counter(r[_DAY_OF_RECORD] for r in records))  # a batch has a model-day once
    except asyncpg.UniqueViolationError:
        pass
    await _staging(conn, "feature_history_staging", "feature_history")
    await conn.copy_records_to_table("feature_history_staging", records=records, columns=list(HISTORY_COLUMNS))
    return {r["snapshot_date"]: int(r["added"]) for r in await conn.fetch(_UPSERT_HISTORY)}


async def _copy_csv(conn: asyncpg.Connection, query: str, *args: object) -> pd.DataFrame:
    # COPY ... CSV and pandas' C parser: far faster than building frames from asyncpg records.
    buffer = io.BytesIO()
    await conn.copy_from_query(query, *args, output=buffer, format="csv", header=True)
    buffer.seek(0)
    frame = pd.read_csv(buffer, keep_default_na=False, na_values=[""], dtype={"model_id": str})
    return frame


async def load_window(
    conn: asyncpg.Connection, model_ids: Sequence[str], first: dt.date, last: dt.date
) -> pd.DataFrame:
    """Every stored row of these models dated first..last, typed for a batch's compute_features (without the
    columns only the day's ranks read: BATCH_WINDOW_COLUMNS)."""
    frame = await _copy_csv(
        conn,
        _SELECT_WINDOW,
        list(model_ids),
        first,
        last,
    )
    result: pd.DataFrame = typed(frame)
    return result


def _stream_partition(day: dt.date) -> str:
    return f"feature_stream_{day:%Y%m%d}"


async def _ensure_stream_partitions(conn: asyncpg.Connection, days: Sequence[dt.date]) -> None:
    """Creates the missing day partitions of feature_stream (the first batch of a day, or of a reopened one)."""
    for day in days:
        name = _stream_partition(day)
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
            continue
        # a savepoint: another replica creating the same day at once is not this batch's failure (the name
        # taken, or the range, whichever check meets it first); if it rolled back, the COPY fails and retries
        with contextlib.suppress(
            asyncpg.DuplicateTableError, asyncpg.UniqueViolationError, asyncpg.InvalidObjectDefinitionError
        ):
            async with conn.transaction():
                await conn.execute(
                    f"CREATE TABLE {name} PARTITION OF feature_stream "
                    f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + dt.timedelta(days=1)).isoformat()}')"
                )


async def days_after(conn: asyncpg.Connection, late: Mapping[str, dt.date]) -> list[tuple[str, dt.date]]:
    """The stored model-days of these models whose features a row of the given day (per model) enters: its next
    `HISTORY_WINDOW_DAYS - 1` days, open or closed, with those days' locks held shared (as `share_days`). A
    closed one reopens when the batch touches it (`touch_days`). Call inside the batch's transaction; the models
    are few (renamed ones), so their history's key finds them."""
    if not late:
        return []
    found = await conn.fetch(
        "SELECT h.model_id, h.snapshot_date FROM feature_history h"
        " JOIN unnest($1::text[], $2::date[]) AS l(model_id, after) USING (model_id)"
        " WHERE h.snapshot_date > l.after AND h.snapshot_date < l.after + $3::integer",
        list(late),
        list(late.values()),
        HISTORY_WINDOW_DAYS,
    )
    pairs = [(r["model_id"], r["snapshot_date"]) for r in found]
    await share_days(conn, sorted({day for _, day in pairs}))
    return pairs


async def append_features(conn: asyncpg.Connection, frame: pd.DataFrame, days: Sequence[dt.date]) -> None:
    """The batch's time features, appended to their days' stream (a redelivery appends again: the close keeps
    the latest). The frame's cross-sectional positions are NaN (`service.batch_features`): the day's ranks are
    the close's (published, not stored). Call inside the batch's transaction, after `share_days`."""
    await _ensure_stream_partitions(conn, days)
    await conn.copy_to_table(
        "feature_stream",
        # a memoryview: asyncpg would take bytes for a file path
        source=memoryview(feature_rows_copy(frame, provisional=True)),
        columns=list(FEATURE_ROW_COLUMNS),
        format="binary",
    )


# Advisory lock space of a day's close: (this class id, the day's ordinal). Replicas (deploy/k8s runs two)
# each see every open day; the lock makes one of them close it, and makes a late batch for that day wait
# until the close is done, so the batch reopens the day instead of being marked closed unseen.
_DAY_LOCK = 0x68_70_66_64  # "hpfd"


async def share_days(conn: asyncpg.Connection, days: Sequence[dt.date]) -> None:
    """Hold these days' locks shared until the transaction ends: a close of one of them waits, or is waited for."""
    for day in sorted(days):  # one order everywhere: no lock cycles between handlers
        await conn.execute("SELECT pg_advisory_xact_lock_shared($1, $2)", _DAY_LOCK, day.toordinal())


async def claim_day(conn: asyncpg.Connection, day: dt.date) -> bool:
    """Take the day's close for this session if no other replica has it and it is still open."""
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", _DAY_LOCK, day.toordinal()):
        return False
    if await conn.fetchval("SELECT closed_at IS NULL FROM feature_days WHERE snapshot_date = $1", day):
        return True
    await release_day(conn, day)  # another replica closed it between our listing and our claim
    return False


async def wait_session_ended(pool: asyncpg.Pool, pid: int, timeout_s: float = 10.0) -> None:
    """Waits (at most `timeout_s`) until the server process of a terminated session is gone, with its locks."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not await pool.fetchval("SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)", pid):
            return
        await asyncio.sleep(0.05)


async def release_day(conn: asyncpg.Connection, day: dt.date) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1, $2)", _DAY_LOCK, day.toordinal())


async def touch_days(conn: asyncpg.Connection, days: Sequence[dt.date], added: Mapping[dt.date, int]) -> None:
    """Record activity on these days, and the model-days `added` to each; a day that was closed reopens, so late
    rows get ranked too."""
    await conn.execute(
        "INSERT INTO feature_days (snapshot_date, streamed) SELECT * FROM unnest($1::date[], $2::integer[]) "
        "ON CONFLICT (snapshot_date) DO UPDATE SET last_event_at = now(), closed_at = NULL, "
        "streamed = feature_days.streamed + EXCLUDED.streamed",
        list(days),
        [added.get(day, 0) for day in days],
    )


async def record_signal(pool: asyncpg.Pool, signal: DayIngested) -> None:
    """Keep the latest day-complete signal of its day (a redelivered or older one changes nothing)."""
    await pool.execute(
        """
        INSERT INTO feature_day_signals (snapshot_date, models, source, signalled_at) VALUES ($1, $2, $3, $4)
        ON CONFLICT (snapshot_date) DO UPDATE SET models = EXCLUDED.models, source = EXCLUDED.source,
            signalled_at = EXCLUDED.signalled_at, received_at = now()
        WHERE feature_day_signals.signalled_at < EXCLUDED.signalled_at
        """,
        signal.snapshot_date,
        signal.models,
        signal.source,
        signal.occurred_at,
    )


class DueDay(NamedTuple):
    day: dt.date
    overtaken_only: bool  # due only because a later day started (it had no signal, or none read yet)


async def days_to_close(pool: asyncpg.Pool, idle_s: float) -> list[DueDay]:
    """Open days that have streamed every model-day the ingestor announced for them, that (unannounced) a later day
    has overtaken, or (where neither comes) that have been quiet for `idle_s` seconds.

    An announced day waits for its count, not for a later day: a consumer catching up drains one partition at a
    time, so a later day shows up long before an earlier one is complete, and each of its remaining batches would
    reopen it for another whole close (docs/decisions/pipeline-redesign.md, session 14). A day due only by the
    later-day rule says so: its signal may not have been read yet (`FeaturesWorker.close_due_days`)."""
    rows = await pool.fetch(
        """
        SELECT snapshot_date, NOT (counted OR idle) AS overtaken_only FROM (
            SELECT d.snapshot_date, coalesce(d.streamed >= s.models, false) AS counted,
                d.last_event_at < now() - make_interval(secs => $1) AS idle,
                s.models IS NULL AND d.snapshot_date < (SELECT max(snapshot_date) FROM feature_days) AS overtaken
            FROM feature_days d LEFT JOIN feature_day_signals s USING (snapshot_date)
            WHERE d.closed_at IS NULL
        ) AS open_days
        WHERE counted OR idle OR overtaken
        ORDER BY snapshot_date
        """,
        idle_s,
    )
    return [DueDay(r["snapshot_date"], r["overtaken_only"]) for r in rows]


def _time_features_typed(frame: pd.DataFrame) -> pd.DataFrame:
    for column in TIME_FEATURE_COLUMNS:
        if column in frame.columns:
            frame[column] = frame[column].astype("float32")
    return typed(frame)


def _day_rows_typed(frame: pd.DataFrame) -> pd.DataFrame:
    # a row's tags stay the JSON text PostgreSQL wrote: the close's events splice it in as it is (service._tags_json)
    frame["tags"] = frame["tags"].astype(object)
    return _time_features_typed(frame)


def _row_end(buffer: bytearray, limit: int) -> int:
    """Length of the buffer's complete CSV records within its first `limit` bytes (ends at a newline outside a
    quoted field); 0 if there is none."""
    end = buffer.rfind(b"\n", 0, limit)
    while end >= 0 and buffer.count(b'"', 0, end) % 2:  # inside quotes: a newline within a field
        end = buffer.rfind(b"\n", 0, end)
    return end + 1


async def plan_close_read(conn: asyncpg.Connection) -> None:
    """The session's planner settings for a read of a whole day (the pool's reset on release puts them back)."""
    for name, value in _CLOSE_READ_SETTINGS.items():
        await conn.execute(f"SET {name} = '{value}'")


async def _stream_csv(
    conn: asyncpg.Connection,
    query: str,
    args: Sequence[object],
    typer: Callable[[pd.DataFrame], pd.DataFrame],
    sink: Callable[[pd.DataFrame], Awaitable[None]],
) -> None:
    """One COPY ... CSV of `query`, handed to `sink` as typed frames of about CLOSE_SLICE_BYTES each, while
    PostgreSQL goes on sending (the sink's wait is the reader's backpressure)."""
    buffer, header = bytearray(), b""

    async def flush(end: int) -> None:
        part = header + bytes(buffer[:end])
        del buffer[:end]
        frame = pd.read_csv(io.BytesIO(part), keep_default_na=False, na_values=[""], dtype={"model_id": str})
        await sink(typer(frame))

    async def take(data: bytes) -> None:
        nonlocal header
        buffer.extend(data)
        if not header and b"\n" in buffer:
            cut = buffer.index(b"\n") + 1
            header = bytes(buffer[:cut])
            del buffer[:cut]
        while header and len(buffer) >= CLOSE_SLICE_BYTES and (end := _row_end(buffer, CLOSE_SLICE_BYTES)):
            await flush(end)

    await plan_close_read(conn)
    # The timeout covers the whole read, paced by the sink (the close's store and publish): minutes for a day of
    # the whole Hub, where the pool's command timeout is for one statement.
    await _copy_out_watched(
        conn,
        conn.copy_from_query(query, *args, output=take, format="csv", header=True, timeout=CLOSE_READ_TIMEOUT_S),
    )
    if header and buffer:
        await flush(len(buffer))


async def _copy_out_watched(conn: asyncpg.Connection, copy: Coroutine[Any, Any, str]) -> str:
    """Runs `copy` (a COPY OUT on `conn`), failing it as soon as `conn` closes under it (asyncpg's termination
    listener).

    asyncpg's COPY OUT with a sink that waits can be handed data while no read waits for it (MagicStack/asyncpg
    issues 240 and 529): the protocol then fails, the transport closes, and the COPY waits for a result that never
    comes, until its whole timeout (an hour for a close). Seen once in the full suite (session 22). Failing at once
    lets the close's retry read the day again."""
    closed = asyncio.Event()

    def on_close(_: asyncpg.Connection) -> None:
        closed.set()

    conn.add_termination_listener(on_close)
    task = asyncio.ensure_future(copy)
    watch = asyncio.ensure_future(closed.wait())
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            raise asyncpg.ConnectionDoesNotExistError("the connection closed during a COPY OUT")
        return task.result()
    finally:
        conn.remove_termination_listener(on_close)
        watch.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await task


async def load_rank_inputs(conn: asyncpg.Connection, day: dt.date) -> pd.DataFrame:
    """What service.day_cross_features needs of every model of a day."""
    parts: list[pd.DataFrame] = []

    async def keep(part: pd.DataFrame) -> None:
        parts.append(part)

    await _stream_csv(conn, _SELECT_RANK_INPUTS, (day, FEATURE_SET), _time_features_typed, keep)
    if not parts:
        columns = ["snapshot_date", "model_id", "pipeline_tag", "downloads", *CROSS_INPUT_COLUMNS]
        return _time_features_typed(pd.DataFrame(columns=columns))
    return pd.concat(parts, ignore_index=True)


async def stream_day_rows(
    conn: asyncpg.Connection, day: dt.date, sink: Callable[[pd.DataFrame], Awaitable[None]]
) -> None:
    """Every row of a day (latest time features joined with the stats), handed to `sink` a slice at a time."""
    await _stream_csv(conn, _SELECT_DAY_ROWS, (day, FEATURE_SET), _day_rows_typed, sink)


async def index_day(conn: asyncpg.Connection, day: dt.date) -> None:
    """Indexes a closed day's stream partition by model: it stays for good, and a rename moves a model's rows in
    every kept day (`hubpulse_common.renames`), which without it would scan them all. Open days stay unindexed
    (their batches' COPY maintains nothing); a reopened day's late rows go into the index it already has."""
    name = _stream_partition(day)
    await conn.execute(f"CREATE INDEX IF NOT EXISTS {name}_model ON {name} (model_id)", timeout=CLOSE_READ_TIMEOUT_S)


async def finish_close(conn: asyncpg.Connection, day: dt.date, models: int) -> None:
    """Marks the day closed, once every row of it was published."""
    await conn.execute("UPDATE feature_days SET closed_at = now(), models = $2 WHERE snapshot_date = $1", day, models)
