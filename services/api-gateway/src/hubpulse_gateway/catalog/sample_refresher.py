"""Keeps each gateway process's `CatalogSample` (the search planner's statistics) loaded and fresh."""

from __future__ import annotations

import asyncio

import asyncpg

from hubpulse_common.logging import get_logger
from hubpulse_common.supervise import Supervised
from hubpulse_gateway.catalog import repository
from hubpulse_gateway.catalog.plan import CatalogSample, SampleRows

log = get_logger(__name__)

_EMPTY = CatalogSample(SampleRows([], [], [], [], [], []), 0)
_RETRY_EMPTY_S = 30.0  # the catalog may not exist or be filled yet when the gateway starts


class SampleRefresher:
    def __init__(self, pool: asyncpg.Pool, rows: int, refresh_s: float) -> None:
        self.sample = _EMPTY
        self._pool = pool
        self._rows = rows
        self._refresh_s = refresh_s
        # reported by the app's /readyz (supervise.report)
        self.refresher = Supervised("search-sample", self._loop)

    async def start(self) -> None:
        """Load once before serving (so the first searches are planned), then refresh in the background."""
        await self.refresh()
        self.refresher.start()

    async def refresh(self) -> None:
        if self._rows <= 0:
            return
        try:
            rows, total = await repository.sample(self._pool, self._rows)
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("search.sample_failed", error=str(exc)[:200])
            return
        self.sample = CatalogSample(rows, total)
        log.info("search.sample_loaded", rows=self.sample.size, total=total)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s if self.sample.size else min(self._refresh_s, _RETRY_EMPTY_S))
            await self.refresh()

    async def close(self) -> None:
        await self.refresher.stop()
