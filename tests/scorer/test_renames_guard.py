"""Scorer replicas and renames (#14): a batch that applies renames excludes every other batch's read-score-write,
so a late row of another replica never stays under an old name; ordinary batches never wait for each other."""

from __future__ import annotations

import asyncio
from typing import Any

from conftest import fresh_database

from hubpulse_common.db import create_pool
from hubpulse_scorer.repository import renames_guard


async def test_a_renaming_batch_excludes_other_batches_which_share(postgres: Any) -> None:
    pool = await create_pool(await fresh_database(postgres, "renames_guard"), max_size=4)
    try:
        order: list[str] = []
        moved = asyncio.Event()

        async def renaming() -> None:
            async with renames_guard(pool, exclusive=True):
                order.append("rename starts")
                await moved.wait()
                order.append("rename ends")

        async def batch(name: str) -> None:
            async with renames_guard(pool, exclusive=False):
                order.append(f"{name} writes")

        rename = asyncio.create_task(renaming())
        while not order:
            await asyncio.sleep(0.01)
        late = asyncio.create_task(batch("late"))
        await asyncio.sleep(0.5)
        assert order == ["rename starts"]  # the other replica's batch waits for the move
        moved.set()
        await asyncio.wait_for(asyncio.gather(rename, late), 10)
        assert order == ["rename starts", "rename ends", "late writes"]

        async with renames_guard(pool, exclusive=False):  # ordinary batches share
            await asyncio.wait_for(batch("other"), 5)
        assert order[-1] == "other writes"
    finally:
        await pool.close()
