"""The close's table of final rows: one row per model-day (its primary key), and no per-row foreign-key check
(a trigger and a lookup per row of the close's COPY)."""

from __future__ import annotations

from features.support import fetch
from hubpulse_common.db import migrate
from hubpulse_features.app import MIGRATIONS

_CONSTRAINTS = """
    SELECT contype::text AS kind, pg_get_constraintdef(oid) AS definition FROM pg_constraint
    WHERE conrelid = 'feature_rows_final'::regclass AND contype <> 'n' ORDER BY contype
"""
_TRIGGERS = "SELECT count(*) AS n FROM pg_trigger WHERE tgrelid = 'feature_rows_final'::regclass"


async def test_final_rows_are_keyed_by_model_day_and_copied_without_per_row_checks(database_url: str) -> None:
    await migrate(database_url, MIGRATIONS, version_table="alembic_version_features")
    constraints = [(r["kind"], r["definition"]) for r in await fetch(database_url, _CONSTRAINTS)]
    assert constraints == [("p", "PRIMARY KEY (snapshot_date, model_id)")]
    assert (await fetch(database_url, _TRIGGERS))[0]["n"] == 0
