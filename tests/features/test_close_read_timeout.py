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


@pytest.mark.timeout(60)
async def test_a_read_whose_connection_closes_under_it_fails_at_once(database_url) -> None:
    """asyncpg's COPY OUT can lose its connection while the sink waits (MagicStack/asyncpg issue 240: data handed
    over while no read waits for it, the protocol fails, the transport closes). The COPY would then wait out its
    whole timeout, an hour for a close; the read fails instead as soon as the connection closes, and the close
    retries."""
    conn = await asyncpg.connect(database_url)
    slices = 0

    async def sink(frame: pd.DataFrame) -> None:
        nonlocal slices
        slices += 1
        if slices == 1:  # the transport closes while the sink holds the first slice
            conn._transport.abort()
            await asyncio.sleep(0.2)

    started = asyncio.get_running_loop().time()
    try:
        with pytest.raises(asyncpg.ConnectionDoesNotExistError):
            await repository._stream_csv(conn, _ROWS, (), lambda frame: frame, sink)
    finally:
        conn.terminate()
    assert asyncio.get_running_loop().time() - started < 10
    assert slices == 1
