"""The services' pools write and read timestamptz exactly as asyncpg's own codec does (theirs is faster to encode,
docs/decisions/pipeline-redesign.md, session 25): same values stored, same Python values read back."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import pytest

from hubpulse_common import db
from hubpulse_common.db import timestamptz_from_pg, timestamptz_to_pg

_VALUES: list[Any] = [
    dt.datetime(2025, 4, 27, 3, 40, 8, 123456, tzinfo=dt.UTC),
    dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),  # before PostgreSQL's epoch
    dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
    dt.datetime(2025, 4, 27, 9, 10, 8, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    dt.datetime(1970, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-8))),
    dt.datetime(2024, 2, 29, 12, 0),  # naive: local time, as asyncpg takes it
    dt.date(2025, 1, 2),  # a date: its local midnight
    dt.datetime.max,  # asyncpg's infinity
    dt.datetime.min,  # and minus infinity
    dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
    dt.datetime(1, 1, 1, tzinfo=dt.UTC),
    None,
]


async def test_the_pools_timestamps_are_asyncpgs(postgres: Any) -> None:
    pool = await db.create_pool(postgres.url, max_size=1)
    plain = await asyncpg.connect(postgres.url)  # asyncpg's own codec
    try:
        await plain.execute(
            "CREATE TABLE ts_ours (i int, t timestamptz); CREATE TABLE ts_asyncpg (i int, t timestamptz)"
        )
        records = list(enumerate(_VALUES))
        async with pool.acquire() as conn:
            await conn.copy_records_to_table("ts_ours", records=records)  # a COPY, as the services write
            await conn.executemany("INSERT INTO ts_ours VALUES ($1 + 100, $2)", records)  # and as parameters
        await plain.copy_records_to_table("ts_asyncpg", records=records)
        await plain.executemany("INSERT INTO ts_asyncpg VALUES ($1 + 100, $2)", records)
        differ = await plain.fetch(
            "SELECT i, o.t AS ours, a.t AS theirs FROM ts_ours o JOIN ts_asyncpg a USING (i)"
            " WHERE o.t IS DISTINCT FROM a.t OR isfinite(o.t) IS DISTINCT FROM isfinite(a.t)"
        )
        assert differ == []
        assert await plain.fetchval("SELECT count(*) FROM ts_ours") == 2 * len(_VALUES)

        query = "SELECT t FROM ts_asyncpg ORDER BY i"
        async with pool.acquire() as conn:
            ours = [r["t"] for r in await conn.fetch(query)]
        theirs = [r["t"] for r in await plain.fetch(query)]
        assert ours == theirs
        assert [(type(v), getattr(v, "tzinfo", None)) for v in ours] == [
            (type(v), getattr(v, "tzinfo", None)) for v in theirs
        ]
        assert ours[0] == _VALUES[0]
        assert ours[0].tzinfo is dt.UTC
        # the infinities read back as asyncpg reads them
        assert ours[7] == dt.datetime.max
        assert ours[8] == dt.datetime.min
    finally:
        await plain.close()
        await pool.close()


def test_a_value_that_is_no_time_is_refused_as_asyncpg_refuses_it() -> None:
    with pytest.raises(TypeError, match=r"expected a datetime\.date or datetime\.datetime instance, got 'str'"):
        timestamptz_to_pg("2025-01-01")  # type: ignore[arg-type]


def test_the_round_trip_keeps_every_microsecond() -> None:
    value = dt.datetime(2026, 12, 7, 7, 30, 1, 999999, tzinfo=dt.UTC)
    assert timestamptz_from_pg(timestamptz_to_pg(value)) == value
