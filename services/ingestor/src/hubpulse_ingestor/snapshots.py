"""Snapshot rows from Hub pages and history frames, and their events: plain functions on plain data."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import orjson
import pandas as pd

from hubpulse_common.encoding import EventEncoder
from hubpulse_common.events import (
    SNAPSHOT_ROW_COLUMNS,
    SNAPSHOTS_BATCH_BYTES,
    SNAPSHOTS_BATCH_ROWS,
    ModelSnapshot,
    ModelSnapshotBatch,
    SnapshotSource,
)
from hubpulse_common.history import known_created_at
from hubpulse_common.kafka import partition_slots
from hubpulse_common.logging import get_logger

log = get_logger(__name__)

Source = SnapshotSource


class SnapshotRow(NamedTuple):
    """One model on one day, in the column order of the `snapshots` table (COPY takes it as is); its fields are
    `ModelSnapshot`'s (the event encoder refuses a row that differs)."""

    snapshot_date: dt.date
    model_id: str
    downloads: int
    downloads_all_time: int | None
    likes: int
    trending_score: float | None
    trending_rank: int | None
    pipeline_tag: str | None
    library_name: str | None
    author: str | None
    tags: list[str]
    created_at: dt.datetime | None
    last_modified: dt.datetime | None
    source: Source


COLUMNS: tuple[str, ...] = SnapshotRow._fields


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and value >= 0 else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def rows_from_page(items: Sequence[dict[str, Any]], day: dt.date, source: Source = "hub") -> list[SnapshotRow]:
    """Hub model dicts (as /api/models returns them) to rows; missing counts become 0, odd values None."""
    return [
        SnapshotRow(
            day,
            item["id"],
            _count(item.get("downloads")) or 0,
            _count(item.get("downloadsAllTime")),
            _count(item.get("likes")) or 0,
            float(score) if isinstance(score := item.get("trendingScore"), int | float) else None,
            None,  # the Hub's list carries no rank; the trending list is its own endpoint
            _text(item.get("pipeline_tag")),
            _text(item.get("library_name")),
            _text(item.get("author")) or (item["id"].split("/", 1)[0] if "/" in item["id"] else None),
            [t for t in item.get("tags") or () if isinstance(t, str)],
            known_created_at(_time(item.get("createdAt"))),
            _time(item.get("lastModified")),
            source,
        )
        for item in items
    ]


def _nullable(values: pd.Series, cast: type) -> list[Any]:
    return [cast(v) if v == v else None for v in values.tolist()]  # NaN != NaN


def rows_from_history(day_frame: pd.DataFrame, source: Source = "import") -> list[SnapshotRow]:
    """One day of a typed history frame (`hubpulse_common.history.load_history`) to rows."""
    n = len(day_frame)
    dates = [d.date() for d in day_frame["snapshot_date"]]
    created = day_frame["created_at"].dt.tz_localize("UTC")
    created_list: list[dt.datetime | None] = [None if pd.isna(t) else t.to_pydatetime() for t in created]
    ids = day_frame["model_id"].tolist()
    columns: tuple[list[Any], ...] = (
        dates,
        ids,
        day_frame["downloads"].fillna(0).astype(np.int64).tolist(),
        _nullable(day_frame["downloads_all_time"], int),
        day_frame["likes"].fillna(0).astype(np.int64).tolist(),
        [None] * n,
        _nullable(day_frame["trending_rank"], int),
        _nullable(day_frame["pipeline_tag"], str),
        _nullable(day_frame["library_name"], str),
        [m.split("/", 1)[0] if "/" in m else None for m in ids],
        [[] for _ in range(n)],
        created_list,
        [None] * n,
        [source] * n,
    )
    return [SnapshotRow(*values) for values in zip(*columns, strict=True)]


def to_events(rows: Sequence[SnapshotRow]) -> Iterator[ModelSnapshot]:
    for r in rows:
        yield ModelSnapshot(**r._asdict())


# ---- the bulk path: each model checked once, as a row; PostgreSQL takes the rows, Kafka their columns -------


@dataclass(slots=True)
class EncodedSnapshots:
    """Checked snapshot rows with their keys (the model ids), the days they cover and the renames they carry.

    `rows` are what PostgreSQL takes, by binary COPY (`repository.upsert_encoded`; when the day already holds
    some of the models, their JSON is upserted instead), and what `snapshot_messages` encodes for
    `hub.snapshots.v2` (`snapshot_values`: one `hub.snapshots.v1` event each, where still published). `hub_ids`
    (the Hub's `_id` of each model, parallel to `keys`) is filled for Hub pages only; `renamed_from` (new name ->
    old name) by `with_renames`.
    """

    keys: list[bytes] = field(default_factory=list)
    rows: list[SnapshotRow] = field(default_factory=list)
    days: set[dt.date] = field(default_factory=set)
    hub_ids: list[str] = field(default_factory=list)
    renamed_from: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    def extend(self, other: EncodedSnapshots) -> None:
        self.keys.extend(other.keys)
        self.rows.extend(other.rows)
        self.days |= other.days
        self.hub_ids.extend(other.hub_ids)
        self.renamed_from |= other.renamed_from


BIGINT_MAX = 2**63 - 1  # snapshots.downloads, downloads_all_time
INTEGER_MAX = 2**31 - 1  # snapshots.likes
MAX_TAGS = 1000  # beyond this a tag list is noise (the Hub's busiest real models carry a few hundred)
MAX_ID_LENGTH = 300  # the gateway's model-id limit
# A row's text (its tags and names) at most: even escaped six bytes a character, a row fits in one
# hub.snapshots.v2 message (SNAPSHOTS_BATCH_BYTES). The Hub's real rows carry a few KB.
MAX_ROW_TEXT = 150_000


class RowRejected(ValueError):
    """One Hub item that cannot be stored; its `reason` is counted in the cycle's report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class PageOutcome:
    """One page after per-row checks: what is stored, and why the rest was not (or was cleaned)."""

    encoded: EncodedSnapshots = field(default_factory=EncodedSnapshots)
    listed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    cleaned: Counter[str] = field(default_factory=Counter)


def _bounded_count(value: Any, limit: int, name: str) -> int | None:
    """A count as `_count` reads it (not a number or negative: missing); above its column's range: rejected."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    count = _count(value)
    if count is not None and count > limit:
        raise RowRejected(f"{name}_out_of_range")
    return count


def _clean_text(value: Any, cleaned: Counter[str]) -> str | None:
    if type(value) is not str or not value:
        return None
    if "\x00" in value:
        cleaned["nul_removed"] += 1
        value = value.replace("\x00", "")
    return value or None


def _clean_tags(tags: Any, cleaned: Counter[str]) -> list[str]:
    if tags is None:
        return []
    if type(tags) is not list:
        cleaned["tags_not_a_list"] += 1
        return []
    if len(tags) > MAX_TAGS:
        cleaned["tags_truncated"] += 1
        tags = tags[:MAX_TAGS]
    out = [t for t in tags if type(t) is str]
    if any("\x00" in t for t in out):
        cleaned["nul_removed"] += 1
        out = [t.replace("\x00", "") for t in out]
    return out


def _model_id(item: dict[str, Any]) -> str:
    model_id = item.get("id")
    if type(model_id) is not str or not model_id:
        raise RowRejected("no_id")
    if "\x00" in model_id or len(model_id) > MAX_ID_LENGTH or model_id != model_id.strip():
        raise RowRejected("bad_id")
    return model_id


def _check_text(texts: Sequence[str | None], tags: list[str]) -> None:
    """A row's text, bounded and encodable as UTF-8 (a lone surrogate is not: neither JSON nor PostgreSQL takes it)."""
    text = "".join([*(t for t in texts if t), *tags])
    if len(text) > MAX_ROW_TEXT:
        raise RowRejected("too_large")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise RowRejected("unencodable") from None


def _row(
    item: dict[str, Any], model_id: str, day: dt.date, source: Source, rank: int | None, cleaned: Counter[str]
) -> SnapshotRow:
    """A Hub item's snapshot row, checked and cleaned."""
    get = item.get
    score = get("trendingScore")
    task = _clean_text(get("pipeline_tag"), cleaned)
    library = _clean_text(get("library_name"), cleaned)
    author = _clean_text(get("author"), cleaned) or (model_id.split("/", 1)[0] if "/" in model_id else None)
    tags = _clean_tags(get("tags"), cleaned)
    _check_text((model_id, task, library, author), tags)
    return SnapshotRow(
        day,
        model_id,
        _bounded_count(get("downloads"), BIGINT_MAX, "downloads") or 0,
        _bounded_count(get("downloadsAllTime"), BIGINT_MAX, "downloads_all_time"),
        _bounded_count(get("likes"), INTEGER_MAX, "likes") or 0,
        float(score) if isinstance(score, int | float) and math.isfinite(score) else None,
        rank,
        task,
        library,
        author,
        tags,
        known_created_at(_time(get("createdAt"))),
        _time(get("lastModified")),
        source,
    )


def encode_page(
    items: Sequence[Any],
    day: dt.date,
    source: Source = "hub",
    *,
    seen: set[str] | None = None,
    ranks: Mapping[str, int] | None = None,
) -> PageOutcome:
    """Hub model dicts to checked rows, one at a time: an odd item is cleaned (NUL bytes, tags that are not a
    list or too many) or rejected (no id, counts out of the columns' range, text that is too long or not
    encodable, a private repo, a model already stored in this walk), counted by reason and logged with its id;
    the rest of the page goes on.

    seen: the Hub `_id`s (or ids) already taken this day, updated in place; ranks: trending rank by `_id`/id."""
    out = PageOutcome(listed=len(items))
    seen = set() if seen is None else seen
    ranks = ranks or {}
    for item in items:
        try:
            if type(item) is not dict:
                raise RowRejected("not_an_object")
            model_id = _model_id(item)
            if item.get("private") is True:
                raise RowRejected("private")
            raw_hub_id = item.get("_id")
            hub_id: str = raw_hub_id if type(raw_hub_id) is str else ""
            key = hub_id or model_id
            if key in seen:
                raise RowRejected("duplicate")
            row = _row(item, model_id, day, source, ranks.get(key), out.cleaned)
        except RowRejected as exc:
            out.skipped[exc.reason] += 1
            if exc.reason not in ("duplicate", "private"):  # expected ones are counted, not logged one by one
                log.warning("ingest.row_rejected", reason=exc.reason, model_id=_loggable_id(item))
            continue
        seen.add(key)
        out.encoded.rows.append(row)
        out.encoded.keys.append(model_id.encode())
        out.encoded.hub_ids.append(hub_id)
    if out.encoded.rows:
        out.encoded.days.add(day)
    return out


def with_renames(batch: EncodedSnapshots, renamed_from: Mapping[str, str]) -> None:
    """Marks those rows of the batch (new name -> old name) as renamed, in place: consumers then move the old
    name's history to the new one."""
    batch.renamed_from.update(renamed_from)


def snapshot_values(batch: EncodedSnapshots, occurred_at: dt.datetime | None = None) -> list[bytes]:
    """Each row as a `hub.snapshots.v1` event (JSON), keyed as `batch.keys`."""
    encode = EventEncoder(ModelSnapshot, occurred_at).encode
    renamed = batch.renamed_from
    return [encode({**r._asdict(), "renamed_from": renamed.get(r.model_id)}) for r in batch.rows]


def rows_json(rows: Sequence[SnapshotRow]) -> str:
    """Rows as one JSON array of objects (their column names), for PostgreSQL's json_to_recordset."""
    return orjson.dumps([r._asdict() for r in rows]).decode()


def snapshot_messages(
    batch: EncodedSnapshots, partitions: int, occurred_at: dt.datetime | None = None
) -> list[tuple[bytes, bytes]]:
    """The batch as `hub.snapshots.v2` messages, (key, JSON) pairs: one day, one source and one partition's models
    a message (the partition the default partitioner gives each model id among `partitions`; the first model id is
    the key, which it maps to the same one), up to SNAPSHOTS_BATCH_ROWS rows and SNAPSHOTS_BATCH_BYTES bytes each,
    in the batch's order. Column-wise: one encode per message, no dict per row."""
    if not batch.rows:
        return []
    encode = EventEncoder(ModelSnapshotBatch, occurred_at).encode
    groups: dict[tuple[dt.date, str, int], list[SnapshotRow]] = {}
    for row, slot in zip(batch.rows, partition_slots(batch.keys, partitions).tolist(), strict=True):
        groups.setdefault((row.snapshot_date, row.source, slot), []).append(row)
    renamed = batch.renamed_from

    def message(day: str, source: str, rows: Sequence[SnapshotRow]) -> list[tuple[bytes, bytes]]:
        columns = dict(zip(COLUMNS, zip(*rows, strict=True), strict=True))
        ids = columns["model_id"]
        fields: dict[str, Any] = {name: columns[name] for name in SNAPSHOT_ROW_COLUMNS}
        fields |= {
            "snapshot_date": day,
            "source": source,
            "model_id": ids,
            "renamed_from": {m: renamed[m] for m in ids if m in renamed} if renamed else {},
        }
        value = encode(fields)
        if len(value) <= SNAPSHOTS_BATCH_BYTES:
            return [(ids[0].encode(), value)]
        if len(rows) == 1:  # the row checks bound a row well below the limit (MAX_ROW_TEXT)
            raise ValueError(f"snapshot of {ids[0]!r} alone is {len(value)} bytes, over {SNAPSHOTS_BATCH_BYTES}")
        half = len(rows) // 2
        return [*message(day, source, rows[:half]), *message(day, source, rows[half:])]

    out: list[tuple[bytes, bytes]] = []
    for (day, source, _), rows in groups.items():
        for lo in range(0, len(rows), SNAPSHOTS_BATCH_ROWS):
            out += message(day.isoformat(), source, rows[lo : lo + SNAPSHOTS_BATCH_ROWS])
    return out


def _loggable_id(item: Any) -> str:
    raw = item.get("id") if isinstance(item, dict) else None
    return repr(raw)[:200]


def encode_rows(rows: Sequence[SnapshotRow]) -> EncodedSnapshots:
    """Rows (e.g. `rows_from_history`) as a batch (an imported history row is never a rename)."""
    return EncodedSnapshots(
        keys=[r.model_id.encode() for r in rows], rows=list(rows), days={r.snapshot_date for r in rows}
    )
