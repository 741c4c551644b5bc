"""A model the Hub renamed keeps one history in every store (issue 14).

The ingestor keys models by the Hub's `_id` and marks the first snapshot under a new name (`renamed_from`); the
features service passes the mark on with that day's features. Each consumer then, in the transaction of the
batch that carries the mark:
- moves the old name's rows to the new name (where both have a row for the same key, the new name's wins),
- remembers the rename in a table of its own (old name -> current name, the day it was first seen; chains
  collapsed: a -> b then b -> c keeps a -> c and b -> c; a rename back removes the loop),
- files a late row of the old name dated before that day under the current name (`current_name`): events of
  the old and the new name travel under different Kafka keys, so the old name's last days may come after the
  mark (a lagging partition, a replay), and they must not bring the old name back.
A repeated mark (at-least-once) finds nothing left to move. Table and column names below come from the
callers' own constants, never from input.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg


class _Named(Protocol):
    @property
    def model_id(self) -> str: ...
    @property
    def snapshot_date(self) -> dt.date: ...
    @property
    def renamed_from(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Rename:
    old_id: str
    new_id: str
    renamed_on: dt.date  # the first day under the new name: the old name's rows before it are the same model's


@dataclass(frozen=True, slots=True)
class Keyed:
    """A table that holds rows per model: its name and the other columns of its primary key."""

    table: str
    other_keys: tuple[str, ...] = ()


def renames_in(events: Iterable[_Named]) -> list[Rename]:
    """The renames that events mark, oldest first (a chain a -> b -> c in one batch is applied in order)."""
    found = {
        (e.renamed_from, e.model_id): e.snapshot_date
        for e in events
        if e.renamed_from is not None and e.renamed_from != e.model_id
    }
    return sorted((Rename(old, new, day) for (old, new), day in found.items()), key=lambda r: r.renamed_on)


class _Columnar(Protocol):
    @property
    def snapshot_date(self) -> dt.date: ...
    @property
    def renamed_from(self) -> Mapping[str, str]: ...


@dataclass(frozen=True, slots=True)
class _Mark:
    model_id: str
    snapshot_date: dt.date
    renamed_from: str | None


def renames_in_messages(messages: Iterable[_Columnar]) -> list[Rename]:
    """`renames_in` of column-by-column messages (hub.snapshots.v2, hub.features.v2 and v3): each marks its rows'
    renames in `renamed_from` (new name -> old name)."""
    return renames_in(_Mark(new, m.snapshot_date, old) for m in messages for new, old in m.renamed_from.items())


def current_name(model_id: str, day: dt.date, aliases: Mapping[str, Rename]) -> str:
    """The name a row of `model_id` dated `day` belongs under: the current one if the model was renamed after."""
    rename = aliases.get(model_id)
    return rename.new_id if rename is not None and day < rename.renamed_on else model_id


def _move(keyed: Keyed) -> tuple[str, str]:
    same = "".join(f" AND o.{c} = n.{c}" for c in keyed.other_keys)
    return (
        f"DELETE FROM {keyed.table} o USING {keyed.table} n WHERE o.model_id = $1 AND n.model_id = $2{same}",  # noqa: S608
        f"UPDATE {keyed.table} SET model_id = $2 WHERE model_id = $1",  # noqa: S608
    )


async def apply(conn: asyncpg.Connection, table: str, rename: Rename, tables: Sequence[Keyed]) -> None:
    """Moves the old name's rows in `tables` to the model's current name (its row wins a shared key) and records
    the rename in `table` (old_id PRIMARY KEY, new_id, renamed_on). Marks may come late, twice or out of order
    (they travel under different keys): a rename the store already knows to be older changes nothing, and one
    whose new name was itself renamed later goes to that later name. Call inside the batch's transaction."""
    old, day = rename.old_id, rename.renamed_on
    later: str | None = await conn.fetchval(
        f"SELECT new_id FROM {table} WHERE old_id = $1 AND renamed_on > $2",  # noqa: S608
        rename.new_id,
        day,
    )
    new = later or rename.new_id
    if new == old:
        return  # renamed back since: the history is already under this name
    for keyed in tables:
        for statement in _move(keyed):
            await conn.execute(statement, old, new)
    await conn.execute(f"UPDATE {table} SET new_id = $2 WHERE new_id = $1 AND renamed_on <= $3", old, new, day)  # noqa: S608
    await conn.execute(f"DELETE FROM {table} WHERE old_id = $1 AND renamed_on <= $2", new, day)  # noqa: S608 (back)
    await conn.execute(
        f"INSERT INTO {table} AS r (old_id, new_id, renamed_on) VALUES ($1, $2, $3)"  # noqa: S608
        " ON CONFLICT (old_id) DO UPDATE SET new_id = EXCLUDED.new_id, renamed_on = EXCLUDED.renamed_on"
        " WHERE r.renamed_on <= EXCLUDED.renamed_on",
        old,
        new,
        day,
    )


async def aliases(conn: asyncpg.Connection, table: str, model_ids: Iterable[str]) -> dict[str, Rename]:
    """The renames recorded in `table` whose old name is one of `model_ids`, by old name."""
    rows = await conn.fetch(
        f"SELECT old_id, new_id, renamed_on FROM {table} WHERE old_id = ANY($1::text[])",  # noqa: S608
        list(set(model_ids)),
    )
    return {r["old_id"]: Rename(r["old_id"], r["new_id"], r["renamed_on"]) for r in rows}


async def follow(
    conn: asyncpg.Connection, table: str, renames: Sequence[Rename], tables: Sequence[Keyed], model_ids: Iterable[str]
) -> dict[str, Rename]:
    """A batch's renames applied to a store (`apply`, oldest first), then the aliases of the batch's model ids
    (for `current_name`). One round trip when the batch marks no rename."""
    for rename in renames:
        await apply(conn, table, rename, tables)
    return await aliases(conn, table, model_ids)


async def renamed_on(conn: asyncpg.Connection, table: str, day: dt.date) -> dict[str, str]:
    """new name -> old name of the renames first seen on `day` (what that day's events pass on)."""
    rows = await conn.fetch(f"SELECT old_id, new_id FROM {table} WHERE renamed_on = $1", day)  # noqa: S608
    return {r["new_id"]: r["old_id"] for r in rows}
