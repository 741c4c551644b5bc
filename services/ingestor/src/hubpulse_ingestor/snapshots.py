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

from hubpulse_common.encoding import EncoderMismatch, EventEncoder
from hubpulse_common.events import ModelSnapshot, SnapshotSource
from hubpulse_common.history import known_created_at
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


# ---- the bulk path: events encoded once, the same bytes go to PostgreSQL and to Kafka -------------------


@dataclass(slots=True)
class EncodedSnapshots:
    """Snapshot events as `ModelSnapshot` JSON (what Kafka carries) with their keys, and the days they cover.

    The JSON is built with orjson from plain dicts in the model's field order (no pydantic object per model);
    tests check it validates as `ModelSnapshot`. `rows` (parallel to `values`, the same fields as typed tuples)
    are what PostgreSQL takes, by binary COPY (`repository.upsert_encoded`; without them, or when the day
    already holds some of the models, the JSON itself is upserted). `hub_ids` (the Hub's `_id` of each model,
    parallel to `keys`) is filled for Hub pages only.
    """

    keys: list[bytes] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    days: set[dt.date] = field(default_factory=set)
    hub_ids: list[str] = field(default_factory=list)
    rows: list[SnapshotRow] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.values)

    def extend(self, other: EncodedSnapshots) -> None:
        self.keys.extend(other.keys)
        self.values.extend(other.values)
        self.days |= other.days
        self.hub_ids.extend(other.hub_ids)
        self.rows.extend(other.rows)


_from_iso = dt.datetime.fromisoformat

BIGINT_MAX = 2**63 - 1  # snapshots.downloads, downloads_all_time
INTEGER_MAX = 2**31 - 1  # snapshots.likes
MAX_TAGS = 1000  # beyond this a tag list is noise (the Hub's busiest real models carry a few hundred)
MAX_ID_LENGTH = 300  # the gateway's model-id limit


def _iso_time(value: Any) -> str | None:
    """The Hub's ISO timestamp as `_time` reads it (UTC when naive), or None: validated by parsing, passed on as
    text (re-formatting costs 15x the parse)."""
    if type(value) is not str or not value:
        return None
    try:
        parsed = _from_iso(value)
    except ValueError:
        return None
    return value if parsed.tzinfo is not None else value + "+00:00"


def _iso_created(value: Any) -> str | None:
    """`_iso_time`, None for the Hub's creation-date placeholder (`known_created_at`)."""
    text = _iso_time(value)
    return text if text is None or known_created_at(_from_iso(text)) is not None else None


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


def _event(
    item: dict[str, Any],
    model_id: str,
    day_text: str,
    source: Source,
    rank: int | None,
    cleaned: Counter[str],
) -> dict[str, Any]:
    """A Hub item's ModelSnapshot fields, checked and cleaned."""
    get = item.get
    score = get("trendingScore")
    author = _clean_text(get("author"), cleaned)
    return {
        "model_id": model_id,
        "snapshot_date": day_text,
        "downloads": _bounded_count(get("downloads"), BIGINT_MAX, "downloads") or 0,
        "downloads_all_time": _bounded_count(get("downloadsAllTime"), BIGINT_MAX, "downloads_all_time"),
        "likes": _bounded_count(get("likes"), INTEGER_MAX, "likes") or 0,
        "trending_score": float(score) if isinstance(score, int | float) and math.isfinite(score) else None,
        "trending_rank": rank,
        "pipeline_tag": _clean_text(get("pipeline_tag"), cleaned),
        "library_name": _clean_text(get("library_name"), cleaned),
        "author": author or (model_id.split("/", 1)[0] if "/" in model_id else None),
        "tags": _clean_tags(get("tags"), cleaned),
        "created_at": _iso_created(get("createdAt")),
        "last_modified": _iso_time(get("lastModified")),
        "source": source,
        "renamed_from": None,  # set by `with_renames` for the few models the platform knows under another name
    }


def _row(event: dict[str, Any], day: dt.date) -> SnapshotRow:
    """An `_event`'s fields as a `snapshots` row (its times parsed: the text was validated by parsing it)."""
    created, modified = event["created_at"], event["last_modified"]
    return SnapshotRow(
        day,
        event["model_id"],
        event["downloads"],
        event["downloads_all_time"],
        event["likes"],
        event["trending_score"],
        event["trending_rank"],
        event["pipeline_tag"],
        event["library_name"],
        event["author"],
        event["tags"],
        None if created is None else _from_iso(created),
        None if modified is None else _from_iso(modified),
        event["source"],
    )


def encode_page(
    items: Sequence[Any],
    day: dt.date,
    source: Source = "hub",
    occurred_at: dt.datetime | None = None,
    *,
    seen: set[str] | None = None,
    ranks: Mapping[str, int] | None = None,
) -> PageOutcome:
    """Hub model dicts to encoded events, one row at a time: an odd item is cleaned (NUL bytes, tags that are
    not a list or too many) or rejected (no id, counts out of the columns' range, a private repo, a model
    already stored in this walk), counted by reason and logged with its id; the rest of the page goes on.

    seen: the Hub `_id`s (or ids) already taken this day, updated in place; ranks: trending rank by `_id`/id."""
    encode = EventEncoder(ModelSnapshot, occurred_at).encode
    day_text = day.isoformat()
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
            event = _event(item, model_id, day_text, source, ranks.get(key), out.cleaned)
            value = encode(event)
        except RowRejected as exc:
            out.skipped[exc.reason] += 1
            if exc.reason not in ("duplicate", "private"):  # expected ones are counted, not logged one by one
                log.warning("ingest.row_rejected", reason=exc.reason, model_id=_loggable_id(item))
            continue
        except EncoderMismatch:
            raise
        except (TypeError, ValueError) as exc:  # orjson: whatever slipped through the checks above
            out.skipped["unencodable"] += 1
            log.warning("ingest.row_rejected", reason="unencodable", model_id=_loggable_id(item), error=str(exc))
            continue
        seen.add(key)
        out.encoded.values.append(value)
        out.encoded.rows.append(_row(event, day))
        out.encoded.keys.append(model_id.encode())
        out.encoded.hub_ids.append(hub_id)
    if out.encoded.values:
        out.encoded.days.add(day)
    return out


def with_renames(batch: EncodedSnapshots, renamed_from: Mapping[str, str]) -> None:
    """Sets `renamed_from` (new name -> old name) on those events of the batch, in place: consumers then move
    the old name's history to the new one. Renames are rare, so the few events are simply re-encoded."""
    if not renamed_from:
        return
    for i, key in enumerate(batch.keys):
        old = renamed_from.get(key.decode())
        if old is not None:
            batch.values[i] = orjson.dumps({**orjson.loads(batch.values[i]), "renamed_from": old})


def _loggable_id(item: Any) -> str:
    raw = item.get("id") if isinstance(item, dict) else None
    return repr(raw)[:200]


def encode_rows(rows: Sequence[SnapshotRow], occurred_at: dt.datetime | None = None) -> EncodedSnapshots:
    """Rows (e.g. `rows_from_history`) to encoded events, as `to_events(rows)` would serialise them."""
    encode = EventEncoder(ModelSnapshot, occurred_at).encode
    out = EncodedSnapshots()
    for r in rows:
        # a row's fields are the event's (dates and times as ISO text); an imported history row is never a rename
        out.values.append(encode({**r._asdict(), "renamed_from": None}))
        out.rows.append(r)
        out.keys.append(r.model_id.encode())
        out.days.add(r.snapshot_date)
    return out
