"""Snapshot rows from Hub pages and history frames, and their events: plain functions on plain data."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import orjson
import pandas as pd

from hubpulse_common.events import ModelSnapshot

Source = Literal["hub", "import", "bench"]


class SnapshotRow(NamedTuple):
    """One model on one day, in the column order of the `snapshots` table (COPY takes it as is)."""

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
            _time(item.get("createdAt")),
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
        yield ModelSnapshot(
            model_id=r.model_id,
            snapshot_date=r.snapshot_date,
            downloads=r.downloads,
            downloads_all_time=r.downloads_all_time,
            likes=r.likes,
            trending_score=r.trending_score,
            trending_rank=r.trending_rank,
            pipeline_tag=r.pipeline_tag,
            library_name=r.library_name,
            author=r.author,
            tags=r.tags,
            created_at=r.created_at,
            last_modified=r.last_modified,
            source=r.source,
        )


# ---- the bulk path: events encoded once, the same bytes go to PostgreSQL and to Kafka -------------------


@dataclass(slots=True)
class EncodedSnapshots:
    """Snapshot events as `ModelSnapshot` JSON (what Kafka carries) with their keys, and the days they cover.

    The JSON is built with orjson from plain dicts in the model's field order (no pydantic object per model);
    tests check it validates as `ModelSnapshot`. PostgreSQL takes the same bytes as one JSON array
    (`repository.upsert_encoded`), so each model is encoded once.
    """

    keys: list[bytes] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    days: set[dt.date] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.values)

    def extend(self, other: EncodedSnapshots) -> None:
        self.keys.extend(other.keys)
        self.values.extend(other.values)
        self.days |= other.days


_from_iso = dt.datetime.fromisoformat


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


def encode_page(
    items: Sequence[dict[str, Any]], day: dt.date, source: Source = "hub", occurred_at: dt.datetime | None = None
) -> EncodedSnapshots:
    """Hub model dicts to encoded events: the same normalisation as `rows_from_page`, one dict per model."""
    occurred = (occurred_at or dt.datetime.now(dt.UTC)).isoformat()
    day_text = day.isoformat()
    dumps = orjson.dumps
    keys: list[bytes] = []
    values: list[bytes] = []
    for item in items:
        model_id: str = item["id"]
        get = item.get
        downloads, all_time = get("downloads"), get("downloadsAllTime")
        likes, score = get("likes"), get("trendingScore")
        author = get("author")
        tags = get("tags")
        pipeline_tag, library_name = get("pipeline_tag"), get("library_name")
        values.append(
            dumps(
                {
                    "schema_version": 1,
                    "occurred_at": occurred,
                    "model_id": model_id,
                    "snapshot_date": day_text,
                    "downloads": downloads if type(downloads) is int and downloads >= 0 else _count(downloads) or 0,
                    "downloads_all_time": all_time if type(all_time) is int and all_time >= 0 else _count(all_time),
                    "likes": likes if type(likes) is int and likes >= 0 else _count(likes) or 0,
                    "trending_score": float(score) if isinstance(score, int | float) else None,
                    "trending_rank": None,
                    "pipeline_tag": pipeline_tag if type(pipeline_tag) is str and pipeline_tag else None,
                    "library_name": library_name if type(library_name) is str and library_name else None,
                    "author": author
                    if type(author) is str and author
                    else (model_id.split("/", 1)[0] if "/" in model_id else None),
                    "tags": [t for t in tags if type(t) is str] if tags else [],
                    "created_at": _iso_time(get("createdAt")),
                    "last_modified": _iso_time(get("lastModified")),
                    "source": source,
                }
            )
        )
        keys.append(model_id.encode())
    return EncodedSnapshots(keys, values, {day} if items else set())


def encode_rows(rows: Sequence[SnapshotRow], occurred_at: dt.datetime | None = None) -> EncodedSnapshots:
    """Rows (e.g. `rows_from_history`) to encoded events, as `to_events(rows)` would serialise them."""
    occurred = (occurred_at or dt.datetime.now(dt.UTC)).isoformat()
    dumps = orjson.dumps
    out = EncodedSnapshots()
    for r in rows:
        out.values.append(
            dumps(
                {
                    "schema_version": 1,
                    "occurred_at": occurred,
                    "model_id": r.model_id,
                    "snapshot_date": r.snapshot_date.isoformat(),
                    "downloads": r.downloads,
                    "downloads_all_time": r.downloads_all_time,
                    "likes": r.likes,
                    "trending_score": r.trending_score,
                    "trending_rank": r.trending_rank,
                    "pipeline_tag": r.pipeline_tag,
                    "library_name": r.library_name,
                    "author": r.author,
                    "tags": r.tags,
                    "created_at": r.created_at.isoformat() if r.created_at is not None else None,
                    "last_modified": r.last_modified.isoformat() if r.last_modified is not None else None,
                    "source": r.source,
                }
            )
        )
        out.keys.append(r.model_id.encode())
        out.days.add(r.snapshot_date)
    return out
