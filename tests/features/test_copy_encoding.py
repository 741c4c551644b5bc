"""The features service's bulk binary COPY of feature_rows stores what asyncpg's record encoding stores."""

from __future__ import annotations

import asyncpg
import numpy as np
import pandas as pd

from hubpulse_common.features import FEATURE_COLUMNS
from hubpulse_features.service import FEATURE_ROW_COLUMNS, FEATURE_SET, feature_rows_copy

_TABLE = """CREATE TABLE {name} (snapshot_date date NOT NULL, model_id text NOT NULL, feature_set text NOT NULL,
    values real[] NOT NULL, provisional boolean NOT NULL)"""


def _frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    values = rng.normal(0, 1e6, size=(rows, len(FEATURE_COLUMNS)))
    values[rng.random(values.shape) < 0.2] = np.nan
    values[0, :3] = [np.inf, -np.inf, 0.0]
    frame = pd.DataFrame(values, columns=list(FEATURE_COLUMNS))
    frame.insert(0, "model_id", [f"org-{i}/modèle-{'x' * (i % 90)}" for i in range(rows)])
    frame.insert(0, "snapshot_date", pd.to_datetime(["1999-12-31", "2000-01-01", "2025-06-30"] * (rows // 3)))
    return frame


async def test_binary_copy_equals_record_copy(database_url: str) -> None:
    frame = _frame(300)
    conn = await asyncpg.connect(database_url)
    try:
        for name in ("by_records", "by_binary"):
            await conn.execute(_TABLE.format(name=name))
        records = [
            (day.date(), model_id, FEATURE_SET, values, True)
            for day, model_id, values in zip(
                frame["snapshot_date"],
                frame["model_id"],
                frame[list(FEATURE_COLUMNS)].to_numpy(dtype="float32").tolist(),
                strict=True,
            )
        ]
        await conn.copy_records_to_table("by_records", records=records, columns=list(FEATURE_ROW_COLUMNS))
        payload = feature_rows_copy(frame, provisional=True)
        await conn.copy_to_table(
            "by_binary", source=memoryview(payload), columns=list(FEATURE_ROW_COLUMNS), format="binary"
        )
        # text forms compare NaN and infinities too
        query = "SELECT snapshot_date, model_id, feature_set, values::text, provisional FROM {} ORDER BY model_id"
        expected = [tuple(r) for r in await conn.fetch(query.format("by_records"))]
        got = [tuple(r) for r in await conn.fetch(query.format("by_binary"))]
        assert len(got) == len(frame)
        assert got == expected
        final = feature_rows_copy(frame.iloc[:5], provisional=False)
        await conn.execute("TRUNCATE by_binary")
        await conn.copy_to_table(
            "by_binary", source=memoryview(final), columns=list(FEATURE_ROW_COLUMNS), format="binary"
        )
        assert await conn.fetchval("SELECT count(*) FROM by_binary WHERE NOT provisional") == 5
    finally:
        await conn.close()
