"""`hubpulse import`: a history file through the same sink as the Hub cycle, one day at a time, oldest first."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import pandas as pd

from hubpulse_common.kafka import EventBus
from hubpulse_ingestor.cycle import SnapshotSink
from hubpulse_ingestor.snapshots import rows_from_history

Progress = Callable[[int], None]  # rows just written


async def import_history(
    pool: asyncpg.Pool,
    bus: EventBus,
    history: pd.DataFrame,
    batch_models: int,
    on_progress: Progress | None = None,
    *,
    publish_v1: bool = False,
) -> int:
    """Writes and publishes every row of a typed history frame (source="import"), announcing each day once all of its
    rows are durable (`DayIngested`); returns the row count."""
    sink = SnapshotSink(pool, bus, "import", publish_v1=publish_v1)
    written = 0
    for _, day_frame in history.groupby("snapshot_date", sort=True):
        rows = rows_from_history(day_frame)
        for start in range(0, len(rows), batch_models):
            chunk = rows[start : start + batch_models]
            await sink.write(chunk)
            written += len(chunk)
            if on_progress is not None:
                on_progress(len(chunk))
        await sink.day_ingested(rows[0].snapshot_date)
    return written
