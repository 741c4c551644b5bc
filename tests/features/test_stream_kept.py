"""Migration 0006: the final rows of days closed before it move into their days' stream partitions, as the oldest
write of their model-days, and `feature_rows_final` goes; `feature_rows` reads the stream."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import asyncpg

from hubpulse_common.db import migrate
from hubpulse_features.app import MIGRATIONS
from hubpulse_features.service import FEATURE_SET

_TABLE = "alembic_version_features"


async def test_final_rows_move_into_the_stream_where_later_writes_still_win(database_url: str, tmp_path: Path) -> None:
    before = tmp_path / "versions"
    before.mkdir()
    for path in MIGRATIONS.glob("000[1-5]_*.py"):
        shutil.copy(path, before)
    await migrate(database_url, before, version_table=_TABLE)
    closed, reopened = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("INSERT INTO feature_sets VALUES ($1, '{}')", FEATURE_SET)
        await conn.executemany(
            "INSERT INTO feature_days (snapshot_date, closed_at) VALUES ($1, $2)",
            [(closed, dt.datetime(2026, 3, 2, tzinfo=dt.UTC)), (reopened, None)],
        )
        await conn.executemany(
            "INSERT INTO feature_rows_final (snapshot_date, model_id, feature_set, values, provisional)"
            " VALUES ($1, $2, $3, $4, false)",
            [
                (closed, "a/m", FEATURE_SET, [1.0, 2.0]),
                (reopened, "a/m", FEATURE_SET, [3.0, 4.0]),
                (reopened, "b/m", FEATURE_SET, [5.0, 6.0]),
            ],
        )
        # the reopened day's stream (its partition made by the first late batch): a newer row of a/m
        await conn.execute(
            f"CREATE TABLE feature_stream_{reopened:%Y%m%d} PARTITION OF feature_stream"
            f" FOR VALUES FROM ('{reopened}') TO ('{reopened + dt.timedelta(days=1)}')"
        )
        await conn.execute(
            "INSERT INTO feature_stream (snapshot_date, model_id, feature_set, values, provisional)"
            " VALUES ($1, 'a/m', $2, '{7, 8}', true)",
            reopened,
            FEATURE_SET,
        )

        await migrate(database_url, MIGRATIONS, version_table=_TABLE)

        assert await conn.fetchval("SELECT to_regclass('feature_rows_final')") is None
        assert await conn.fetchval("SELECT count(*) FROM feature_stream") == 4  # every write kept
        rows = await conn.fetch("SELECT snapshot_date, model_id, values, provisional FROM feature_rows ORDER BY 1, 2")
        assert [(r["snapshot_date"], r["model_id"], r["values"], r["provisional"]) for r in rows] == [
            (closed, "a/m", [1.0, 2.0], False),
            (reopened, "a/m", [7.0, 8.0], True),  # the late stream row wins over the old final one
            (reopened, "b/m", [5.0, 6.0], True),
        ]
        # no primary key or trigger on the stream: its COPY is the model-day's one write; a closed day's partition
        # is indexed by model (a rename's move reads its rows there), an open one's is not
        for day, indexed in ((closed, 1), (reopened, 0)):
            name = f"feature_stream_{day:%Y%m%d}"
            checks = await conn.fetchval(
                "SELECT count(*) FROM pg_constraint WHERE conrelid = $1::regclass AND contype <> 'n'", name
            )
            indexes = await conn.fetch(
                "SELECT pg_get_indexdef(indexrelid) AS d FROM pg_index WHERE indrelid = $1::regclass", name
            )
            triggers = await conn.fetchval("SELECT count(*) FROM pg_trigger WHERE tgrelid = $1::regclass", name)
            assert (checks, len(indexes), triggers) == (0, indexed, 0), name
            assert all(r["d"].endswith("USING btree (model_id)") for r in indexes)
    finally:
        await conn.close()
