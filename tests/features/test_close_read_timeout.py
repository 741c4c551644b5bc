"""A close's read of a day takes as long as its store and publish do: the connection's command timeout (one
statement's limit, 60 s in the pool) must not cut it. At 2M models the read outlived it and every close failed."""

from __future__ import annotations

import asyncio

import asyncpg
import pandas as pd
import pytest

from hubpulse_features import repository

# about 3.5 slices of CSV: the sink is called several times, each call slower than the connection's timeout
_ROWS = "SELECT i AS model_id, repeat('x', 300) AS pad FROM generate_series(1, 100000) AS i"


@pytest.mark.timeout(120)
async def test_a_day_read_slower_than_the_command_timeout_completes(database_url) -> None:
    conn = await asyncpg.connect(database_url, command_timeout=0.5)
    seen: list[int] = []

    async def slow_sink(frame: pd.DataFrame) -> None:
        await asyncio.sleep(0.4)  # the close's store and publish of a slice
        seen.append(len(frame))

    try:
        await repository._stream_csv(conn, _ROWS, (), lambda frame: frame, slow_sink)
    finally:
        await conn.close()
    assert len(seen) >= 3
    assert sum(seen) == 100_000
