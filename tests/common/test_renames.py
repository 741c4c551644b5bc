"""The re-key of a renamed model's rows (hubpulse_common.renames), on a real PostgreSQL table: marks that come
in order, out of order, twice, and renames back all leave one history under the model's current name."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from types import SimpleNamespace

import asyncpg
import pytest

from hubpulse_common import renames
from hubpulse_common.renames import Keyed, Rename, current_name, renames_in

D1, D2, D3 = dt.date(2026, 3, 1), dt.date(2026, 3, 2), dt.date(2026, 3, 3)
TABLES = (Keyed("history", ("snapshot_date",)), Keyed("latest"))
AB, BC, BA = Rename("o/a", "o/b", D2), Rename("o/b", "o/c", D3), Rename("o/b", "o/a", D3)


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    await conn.execute(
        "CREATE TABLE history (model_id text, snapshot_date date, v int, PRIMARY KEY (model_id, snapshot_date));"
        "CREATE TABLE latest (model_id text PRIMARY KEY, v int);"
        "CREATE TABLE renames (old_id text PRIMARY KEY, new_id text NOT NULL, renamed_on date NOT NULL)"
    )
    await conn.executemany("INSERT INTO history VALUES ($1, $2, $3)", [("o/a", D1, 1), ("o/a", D2, 2)])
    await conn.execute("INSERT INTO latest VALUES ('o/a', 2)")
    try:
        yield conn
    finally:
        await conn.close()


async def _state(conn: asyncpg.Connection) -> tuple[list[tuple[str, dt.date, int]], list[str], dict[str, str]]:
    history = [tuple(r) for r in await conn.fetch("SELECT * FROM history ORDER BY 2, 1")]
    latest = [r["model_id"] for r in await conn.fetch("SELECT model_id FROM latest ORDER BY 1")]
    known = {r["old_id"]: r["new_id"] for r in await conn.fetch("SELECT old_id, new_id FROM renames")}
    return history, latest, known  # type: ignore[return-value]


async def _apply(conn: asyncpg.Connection, *marks: Rename) -> None:
    async with conn.transaction():
        await renames.follow(conn, "renames", marks, TABLES, [])


def test_marks_are_read_from_events_oldest_first_and_a_row_is_filed_by_its_date() -> None:
    events = [
        SimpleNamespace(model_id="o/c", snapshot_date=D3, renamed_from="o/b"),
        SimpleNamespace(model_id="o/b", snapshot_date=D2, renamed_from="o/a"),
        SimpleNamespace(model_id="o/b", snapshot_date=D2, renamed_from="o/a"),  # redelivered
        SimpleNamespace(model_id="o/x", snapshot_date=D2, renamed_from=None),
    ]
    assert renames_in(events) == [AB, BC]
    aliases = {"o/a": Rename("o/a", "o/c", D2)}
    assert current_name("o/a", D1, aliases) == "o/c"  # a late row of the old name: the renamed model's
    assert current_name("o/a", D2, aliases) == "o/a"  # the old name used again after the rename: another model
    assert current_name("o/x", D1, aliases) == "o/x"


async def test_a_rename_moves_every_row_and_the_new_names_row_wins_a_shared_key(conn: asyncpg.Connection) -> None:
    await conn.execute("INSERT INTO history VALUES ('o/b', $1, 20)", D2)  # the new name's own row of that day

    await _apply(conn, AB)

    assert await _state(conn) == ([("o/b", D1, 1), ("o/b", D2, 20)], ["o/b"], {"o/a": "o/b"})
    aliases = await renames.aliases(conn, "renames", ["o/a", "o/x"])
    assert aliases == {"o/a": AB}
    assert await renames.renamed_on(conn, "renames", D2) == {"o/b": "o/a"}


@pytest.mark.parametrize("order", ["in order", "out of order"])
async def test_a_chain_ends_under_the_last_name_whatever_the_order_of_its_marks(
    conn: asyncpg.Connection, order: str
) -> None:
    await _apply(conn, *((AB, BC) if order == "in order" else (BC, AB)))
    after = await _state(conn)

    assert after == ([("o/c", D1, 1), ("o/c", D2, 2)], ["o/c"], {"o/a": "o/c", "o/b": "o/c"})
    await _apply(conn, AB, BC)  # at least once: both marks again
    await _apply(conn, AB)
    assert await _state(conn) == after


@pytest.mark.parametrize("order", ["in order", "out of order"])
async def test_a_rename_back_leaves_the_history_under_the_first_name(conn: asyncpg.Connection, order: str) -> None:
    await _apply(conn, *((AB, BA) if order == "in order" else (BA, AB)))
    after = await _state(conn)

    assert after[0] == [("o/a", D1, 1), ("o/a", D2, 2)]
    assert after[1] == ["o/a"]
    assert "o/a" not in after[2]  # a's own name is current again: its late rows stay a's
    await _apply(conn, AB)  # the old mark redelivered changes nothing
    assert await _state(conn) == after
