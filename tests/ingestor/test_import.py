"""`hubpulse import FILE`: history files through the same sink as the Hub cycle, day by day."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import asyncpg
import pytest
from conftest import shared_data_file  # tests/conftest.py (pytest puts tests/ on sys.path)
from support.polling import wait_for
from typer.testing import CliRunner

from hubpulse.cli import app
from hubpulse_common.errors import InputError
from hubpulse_common.events import DayIngested
from hubpulse_common.synthetic import SyntheticHub

from .conftest import EventTap, SnapshotTap

runner = CliRunner()


async def _import(path: Path) -> None:
    # the command runs its own event loop: keep it off the test's
    await asyncio.to_thread(_invoke, path)


def _invoke(path: Path) -> None:
    result = runner.invoke(app, ["import", str(path)])
    if result.exception is not None:
        raise result.exception
    assert result.exit_code == 0, result.output


async def _per_day(database_url: str) -> dict[str, tuple[int, int]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT snapshot_date::text AS d, count(*) AS n, count(DISTINCT model_id) AS m FROM snapshots"
            " WHERE source = 'import' GROUP BY 1 ORDER BY 1"
        )
    finally:
        await conn.close()
    return {r["d"]: (r["n"], r["m"]) for r in rows}


@pytest.mark.usefixtures("settings")
async def test_import_generated_file_day_by_day_idempotently(
    tmp_path: Path, database_url: str, tap: SnapshotTap, signals: EventTap[DayIngested]
) -> None:
    history = SyntheticHub(300, 4, seed=2).history()
    path = tmp_path / "history.csv.gz"
    history.to_csv(path, index=False, compression="gzip")
    expected = history.groupby(history["snapshot_date"].astype(str))["model_id"].nunique().to_dict()

    await _import(path)
    await _import(path)  # a second import overwrites, never duplicates

    assert {d: n for d, (n, m) in (await _per_day(database_url)).items() if n == m} == expected
    # the broker is shared by the session: look at this import's events only
    events = [(k, e) for k, e in await tap.rows() if e.source == "import"]
    assert len(events) == 2 * len(history)
    first_model = history["model_id"].iloc[0]
    per_model = [e.snapshot_date for k, e in events if k.decode() == first_model]
    assert len(per_model) == 2 * len(expected)
    assert per_model[: len(expected)] == sorted(per_model[: len(expected)])  # one model's days arrive in order
    # each import announces each day it wrote, once, with the day's models
    got = await wait_for(
        signals.read,
        lambda events: sum(e.source == "import" for _, e in events) >= 2 * len(expected),
        timeout_s=15,
        what="each import's signals",
    )
    announced = [(str(e.snapshot_date), e.models) for _, e in got if e.source == "import"]
    assert sorted(announced) == sorted(2 * list(expected.items()))


@pytest.mark.usefixtures("settings")
async def test_import_shared_data(database_url: str) -> None:
    path = shared_data_file("top-models_daily.csv.gz")
    with gzip.open(path, "rt") as fh:
        lines = sum(1 for _ in fh) - 1
    await _import(path)
    per_day = await _per_day(database_url)
    assert sum(n for n, _ in per_day.values()) == lines
    assert all(n == m for n, m in per_day.values())
    assert len(per_day) > 1


@pytest.mark.usefixtures("settings")
async def test_malformed_file_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "snapshot_date,model_id,downloads,likes\n2025-01-01,a/x,10,1\n2025-01-01,a/y,12,2\n2025-01-02,a/x,eleven,1\n"
    )
    with pytest.raises(InputError, match=r"bad\.csv line 4, column downloads: 'eleven' is not an integer"):
        await _import(path)
