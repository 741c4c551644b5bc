"""Business logic of the features service: plain functions on plain data (no I/O).

Streaming protocol (see hubpulse_common.features for the exactness contract):
- per batch: the batch's snapshots plus each of its models' previous HISTORY_WINDOW_DAYS - 1 days go
  through `compute_features`; time-series features are then exact and are stored (provisional: their
  cross-sectional features rank the model only against the batch's own models of that day), not emitted;
- when a day closes (a later day has started, or the day has been quiet for a while), its
  cross-sectional features are recomputed over the whole day (`cross_sectional_features`, the same code
  compute_features runs) and every row of the day is stored final and emitted, once. Emitting the
  provisional rows as well would double the scorer's work and writes for a few seconds of latency.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from hubpulse_common.encoding import EventEncoder, bounded_messages, runs_of
from hubpulse_common.events import (
    FEATURES_BATCH_BYTES,
    FEATURES_BATCH_ROWS,
    ModelFeatures,
    ModelFeaturesBatch,
    ModelFeaturesPacked,
    ModelSnapshotBatch,
)
from hubpulse_common.features import (
    CROSS_FEATURE_COLUMNS,
    FEATURE_COLUMNS,
    HISTORY_WINDOW_DAYS,
    compute_features,
    cross_sectional_features,
)
from hubpulse_common.history import HISTORY_COLUMNS as FILE_COLUMNS
from hubpulse_common.kafka import partition_slots
from hubpulse_common.renames import Rename, current_name


class HistoryRow(NamedTuple):
    """One feature_history row, in the table's column order (COPY takes it as is)."""

    model_id: str
    snapshot_date: dt.date
    downloads: int
    downloads_all_time: int | None
    likes: int
    trending_rank: int | None
    pipeline_tag: str | None
    library_name: str | None
    author: str | None
    tags: list[str]
    created_at: dt.datetime | None
    last_modified: dt.datetime | None


HISTORY_COLUMNS: tuple[str, ...] = HistoryRow._fields
# What compute_features reads of a history row: exactly the history file's columns.
WINDOW_COLUMNS: tuple[str, ...] = FILE_COLUMNS
# ... and what a batch's window needs of them: the task and library only feed the day's ranks (the close's, read
# from the day's rows), and the window holds each model's rows of up to HISTORY_WINDOW_DAYS days.
BATCH_WINDOW_COLUMNS: tuple[str, ...] = tuple(c for c in WINDOW_COLUMNS if c not in ("pipeline_tag", "library_name"))
STAT_COLUMNS: tuple[str, ...] = tuple(c for c in HISTORY_COLUMNS if c not in ("model_id", "snapshot_date"))
TIME_FEATURE_COLUMNS: tuple[str, ...] = tuple(c for c in FEATURE_COLUMNS if c not in CROSS_FEATURE_COLUMNS)
FEATURE_SET: str = hashlib.sha256(",".join(FEATURE_COLUMNS).encode()).hexdigest()[:12]
# Column order of feature_rows records.
FEATURE_ROW_COLUMNS: tuple[str, ...] = ("snapshot_date", "model_id", "feature_set", "values", "provisional")

Record = tuple[Any, ...]
_ORDINAL_EPOCH = dt.date(1970, 1, 1).toordinal()  # datetime64's day 0


def window_start(day: dt.date) -> dt.date:
    """First day whose rows the features of `day` depend on."""
    return day - dt.timedelta(days=HISTORY_WINDOW_DAYS - 1)


def _author(model_id: str) -> str | None:
    """The namespace of a Hub id ('meta-llama/Llama-3' -> 'meta-llama'); None for legacy ids without one."""
    return model_id.split("/", 1)[0] if "/" in model_id else None


def day_groups(batches: Sequence[ModelSnapshotBatch]) -> list[list[ModelSnapshotBatch]]:
    """A batch's messages in groups of days whose features windows overlap (a day further than a window from the
    group's last starts the next group), in the batch's order within each. Each group's window is read and computed
    on its own: one window from the batch's first day to its last would span every day between (a backfill, a
    replay beside today's walk), and the features' day grid with it."""
    group_of: dict[dt.date, int] = {}
    group, last = 0, None
    for day in sorted({b.snapshot_date for b in batches}):
        if last is not None and day - last >= dt.timedelta(days=HISTORY_WINDOW_DAYS):
            group += 1
        group_of[day], last = group, day
    groups: list[list[ModelSnapshotBatch]] = [[] for _ in range(group + 1)]
    for b in batches:
        groups[group_of[b.snapshot_date]].append(b)
    return groups


def snapshot_records(
    batches: Iterable[ModelSnapshotBatch], aliases: Mapping[str, Rename] | None = None
) -> list[HistoryRow]:
    """feature_history rows of a batch of messages, zipped from their columns; a model-day that occurs twice
    (redelivery, re-ingest) keeps its last. aliases: renames by old name; an old name's row dated before its rename
    is filed under the current name."""
    latest: dict[tuple[str, dt.date], HistoryRow] = {}
    for b in batches:
        day = b.snapshot_date
        ids = b.model_id
        names = [current_name(m, day, aliases) for m in ids] if aliases else ids
        authors = b.author if None not in b.author else [a or _author(m) for a, m in zip(b.author, ids, strict=True)]
        rows = map(
            HistoryRow,
            names,
            repeat(day),
            b.downloads,
            b.downloads_all_time,
            b.likes,
            b.trending_rank,
            b.pipeline_tag,
            b.library_name,
            authors,
            b.tags,
            b.created_at,
            b.last_modified,
        )
        latest.update(((row[0], day), row) for row in rows)
    return list(latest.values())


def records_frame(records: Sequence[Record]) -> pd.DataFrame:
    """feature_history records as a typed frame (the hubpulse_common.history layout plus the extra stats)."""
    frame = pd.DataFrame.from_records(records, columns=list(HISTORY_COLUMNS))
    return typed(frame)


def filed_late(batches: Iterable[ModelSnapshotBatch], aliases: Mapping[str, Rename]) -> dict[str, dt.date]:
    """new name -> the earliest day of this batch's rows that arrive under an old name and are filed under the new
    one (`snapshot_records`). The two names are on different partitions: the new name's later days may have been
    computed already, without these rows."""
    late: dict[str, dt.date] = {}
    if not aliases:  # the usual batch: no row of a renamed model, nothing to look at
        return late
    for b in batches:
        for model_id in b.model_id:
            if model_id in aliases and (name := current_name(model_id, b.snapshot_date, aliases)) != model_id:
                late[name] = min(late.get(name, b.snapshot_date), b.snapshot_date)
    return late


def with_keys(keys: pd.DataFrame, more: Sequence[tuple[str, dt.date]]) -> pd.DataFrame:
    """`records_keys` and more model-days, each once."""
    if not more:
        return keys
    extra = pd.DataFrame(more, columns=["model_id", "snapshot_date"])
    extra["snapshot_date"] = pd.to_datetime(extra["snapshot_date"]).astype("datetime64[ns]")
    return pd.concat([keys, extra], ignore_index=True).drop_duplicates(ignore_index=True)


def records_keys(records: Sequence[HistoryRow]) -> pd.DataFrame:
    """The model-days of feature_history records (model_id, snapshot_date), typed as `records_frame` types them:
    what `batch_features` needs of a batch, whose features come from the stored window (its stats would only be
    typed into a frame to be dropped from it)."""
    ordinals = np.fromiter((r.snapshot_date.toordinal() for r in records), dtype=np.int64, count=len(records))
    days = (ordinals - _ORDINAL_EPOCH).astype("datetime64[D]").astype("datetime64[ns]")
    return pd.DataFrame({"model_id": [r.model_id for r in records], "snapshot_date": days})


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Coerce history columns to the types compute_features expects (NaN for missing, naive UTC times)."""
    frame["snapshot_date"] = pd.to_datetime(frame["snapshot_date"]).astype("datetime64[ns]")
    for column in ("downloads", "downloads_all_time", "likes", "trending_rank"):
        if column in frame.columns:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in ("created_at", "last_modified"):
        if column in frame.columns:
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601").dt.tz_localize(None)
    for column in ("pipeline_tag", "library_name", "author"):
        if column in frame.columns:
            frame[column] = frame[column].astype(object).where(frame[column].notna(), np.nan)
    return frame


def batch_features(window: pd.DataFrame, batch: pd.DataFrame, *, cross_sectional: bool = False) -> pd.DataFrame:
    """Feature rows of the batch's model-days, given every stored row of its models over the window.

    `window` must hold the batch rows themselves (they are stored before this runs). `batch`: the batch's keys
    (`records_keys`), or its `records_frame` (stats included). Returns the batch frame with FEATURE_COLUMNS added,
    one row per model-day of the batch (in no set order): the time features, and the cross-sectional ones NaN (a
    batch is not its days' population: they are the close's) unless `cross_sectional` ranks the batch against
    itself.
    """
    first = batch["snapshot_date"].min()
    columns = [c for c in WINDOW_COLUMNS if c in window.columns]  # a handler's window: BATCH_WINDOW_COLUMNS
    feats = compute_features(window[columns].reset_index(drop=True), output_from=first, cross_sectional=cross_sectional)
    # trending_rank is both a stat and a feature (the same value): keep one column of it
    stats = batch[[c for c in batch.columns if c not in feats.columns or c in ("snapshot_date", "model_id")]]
    if stats.shape[1] == 2 and len(feats) == len(stats):
        # The handler's case: the batch is its keys, and the window's rows from its first day on are exactly
        # them (each batch key is in the window, and as many rows means no other): the merge would only reorder.
        return feats[["model_id", "snapshot_date", *(c for c in feats.columns if c not in stats.columns)]]
    return stats.merge(feats, on=["snapshot_date", "model_id"], how="inner", validate="one_to_one")


def day_cross_features(rank_inputs: pd.DataFrame) -> pd.DataFrame:
    """A complete day's cross-sectional features (the same code compute_features runs), indexed by model id."""
    cross = cross_sectional_features(rank_inputs)
    return cross.set_index("model_id")[list(CROSS_FEATURE_COLUMNS)]


def close_rows(rows: pd.DataFrame, cross: pd.DataFrame) -> pd.DataFrame:
    """Some of a closed day's rows with their final cross-sectional features (looked up by model id)."""
    out = rows.reset_index(drop=True)
    final = cross.reindex(out["model_id"])
    for column in CROSS_FEATURE_COLUMNS:
        out[column] = final[column].to_numpy()
    return out


def _days(frame: pd.DataFrame) -> np.ndarray:
    days: np.ndarray = frame["snapshot_date"].to_numpy(dtype="datetime64[D]")
    return days


# PostgreSQL's binary COPY format (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4):
# feature_rows records are built in bulk with numpy instead of handing asyncpg Python lists of 63 floats, whose
# per-element encoding (an ABC isinstance check per float) was most of the features service's COPY cost.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + np.array([0, 0], dtype=">i4").tobytes()
COPY_TRAILER = np.array([-1], dtype=">i2").tobytes()
_PG_EPOCH = np.datetime64("2000-01-01", "D")
_FLOAT4_OID = 700
_ROW_HEAD = np.dtype([("fields", ">i2"), ("day_len", ">i4"), ("day", ">i4"), ("id_len", ">i4")])


def _row_tail_dtype(features: int) -> np.dtype[np.void]:
    """feature_set, values (a 1-D real[] without NULL elements: NaN is a value) and provisional, packed."""
    return np.dtype(
        [
            ("set_len", ">i4"),
            ("set", f"S{len(FEATURE_SET)}"),
            ("values_len", ">i4"),
            ("ndim", ">i4"),
            ("has_nulls", ">i4"),
            ("oid", ">i4"),
            ("size", ">i4"),
            ("lower", ">i4"),
            ("items", np.dtype([("len", ">i4"), ("value", ">f4")]), (features,)),
            ("prov_len", ">i4"),
            ("prov", "u1"),
        ]
    )


def feature_rows_copy(frame: pd.DataFrame, *, provisional: bool) -> bytes:
    """feature_rows records (FEATURE_ROW_COLUMNS order) of a frame holding keys and FEATURE_COLUMNS, as one
    binary COPY payload (header, rows, trailer)."""
    n = len(frame)
    values = frame[list(FEATURE_COLUMNS)].to_numpy(dtype="float32", na_value=np.nan)
    ids = [m.encode() for m in frame["model_id"].tolist()]
    head = np.zeros(n, dtype=_ROW_HEAD)
    head["fields"] = len(FEATURE_ROW_COLUMNS)
    head["day_len"] = 4
    head["day"] = (_days(frame) - _PG_EPOCH).astype("int64")
    head["id_len"] = np.fromiter(map(len, ids), dtype=np.int64, count=n)
    tail = np.zeros(n, dtype=_row_tail_dtype(values.shape[1]))
    tail["set_len"] = len(FEATURE_SET)
    tail["set"] = FEATURE_SET.encode()
    tail["values_len"] = tail.dtype["items"].itemsize + 20
    tail["ndim"], tail["has_nulls"], tail["oid"] = 1, 0, _FLOAT4_OID
    tail["size"], tail["lower"] = values.shape[1], 1
    tail["items"]["len"] = 4
    tail["items"]["value"] = values
    tail["prov_len"], tail["prov"] = 1, int(provisional)
    heads, tails = head.tobytes(), tail.tobytes()
    h, t = _ROW_HEAD.itemsize, tail.dtype.itemsize
    parts = [COPY_HEADER]
    for i, model_id in enumerate(ids):
        parts += (heads[i * h : (i + 1) * h], model_id, tails[i * t : (i + 1) * t])
    parts.append(COPY_TRAILER)
    return b"".join(parts)


# Each helper takes the rows in `order` (every row, in the frame's order, by default).
Order = npt.NDArray[np.intp] | slice


def _nullable_ints(frame: pd.DataFrame, column: str, order: Order = slice(None)) -> list[int | None]:
    x = frame[column].to_numpy(dtype="float64", na_value=np.nan)[order]
    missing = np.isnan(x)
    out = np.where(missing, 0, x).astype("int64").astype(object)
    out[missing] = None
    values: list[int | None] = out.tolist()
    return values


def _nullable_strings(frame: pd.DataFrame, column: str, order: Order = slice(None)) -> list[str | None]:
    x = frame[column].to_numpy(dtype=object)[order]
    out = x.copy()
    out[pd.isna(x)] = None
    values: list[str | None] = out.tolist()
    return values


def _utc_times(frame: pd.DataFrame, column: str, order: Order = slice(None)) -> list[str | None]:
    """Naive-UTC datetimes as ISO 8601 UTC text (what pydantic writes for an aware datetime), None for NaT."""
    x = frame[column].to_numpy(dtype="datetime64[us]")[order]
    text = np.datetime_as_string(x, unit="us", timezone="UTC").astype(object)
    text[np.isnat(x)] = None
    values: list[str | None] = text.tolist()
    return values


def feature_payloads(
    frame: pd.DataFrame,
    *,
    provisional: bool,
    renamed_from: Mapping[str, str] | None = None,
    day_models: int | None = None,
) -> list[tuple[bytes, bytes]]:
    """ModelFeatures of each row of a frame holding keys, FEATURE_COLUMNS and STAT_COLUMNS, as (key, JSON) pairs.
    renamed_from: new name -> old name of the models first seen under their new name on the frame's day.

    `day_models`: the size of the (closed) day, so that a consumer knows when it has all of the day's rows.

    Encoded column-wise in bulk instead of validating one pydantic model per row (the frame is our own
    output, already typed); the JSON is what `ModelFeatures(...).model_dump_json()` gives, NaN as null,
    and tests/features check that it validates back to the same event.
    """
    x = frame[list(FEATURE_COLUMNS)].to_numpy(dtype="float64", na_value=np.nan).tolist()
    ids = frame["model_id"].tolist()
    days = np.datetime_as_string(_days(frame), unit="D").tolist()
    encode = EventEncoder(ModelFeatures, raw=("tags",)).encode
    names = list(FEATURE_COLUMNS)
    renamed = renamed_from or {}
    columns = zip(
        ids,
        days,
        x,
        _nullable_ints(frame, "downloads"),
        _nullable_ints(frame, "downloads_all_time"),
        _nullable_ints(frame, "likes"),
        _nullable_ints(frame, "trending_rank"),
        _nullable_strings(frame, "pipeline_tag"),
        _nullable_strings(frame, "library_name"),
        _nullable_strings(frame, "author"),
        _tags_json(frame),
        _utc_times(frame, "created_at"),
        _utc_times(frame, "last_modified"),
        strict=True,
    )
    return [
        (
            model_id.encode(),
            encode(
                {
                    "model_id": model_id,
                    "snapshot_date": day,
                    "features": dict(zip(names, values, strict=True)),
                    "provisional": provisional,
                    "downloads": downloads,
                    "downloads_all_time": all_time,
                    "likes": likes,
                    "trending_rank": rank,
                    "pipeline_tag": task,
                    "library_name": library,
                    "author": author,
                    "created_at": created,
                    "last_modified": modified,
                    "renamed_from": renamed.get(model_id),
                    "day_models": day_models,
                },
                tags,
            ),
        )
        for (
            model_id,
            day,
            values,
            downloads,
            all_time,
            likes,
            rank,
            task,
            library,
            author,
            tags,
            created,
            modified,
        ) in columns
    ]


def _tags_json(frame: pd.DataFrame, order: Order = slice(None)) -> list[str]:
    """Each row's tags as JSON text: as the close reads them (PostgreSQL's JSON of the array, spliced into the events
    as it is, where parsing each into a list only for the encoder to write it again cost the close a Python loop
    of splits and one of copies), or encoded from a list (a tuple, an array; anything else is no tags)."""
    return [
        tags if isinstance(tags, str) else _dumps(list(tags) if isinstance(tags, list | tuple | np.ndarray) else [])
        for tags in frame["tags"].to_numpy(dtype=object)[order].tolist()
    ]


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def feature_batches(
    frame: pd.DataFrame,
    *,
    renamed_from: Mapping[str, str] | None = None,
    day_models: int | None = None,
    partitions: int,
    rows: int = FEATURES_BATCH_ROWS,
    event: type[ModelFeaturesPacked] | type[ModelFeaturesBatch] = ModelFeaturesPacked,
) -> list[tuple[bytes, bytes]]:
    """The rows of one day's frame (keys, FEATURE_COLUMNS and STAT_COLUMNS, one row per model) as `event` messages
    (`hub.features.v3`, or v2) of up to `rows` rows and FEATURES_BATCH_BYTES bytes each, as (key, JSON) pairs.

    A message holds the models of one partition of the topic's `partitions` (the one the default partitioner gives
    the model-day's own key, `key_of(day, model)`; the message's key, its first row's, maps there too). So every
    publication of a model-day lands on one partition, in order, however the day is sliced: a day closed again
    after late rows is not overtaken by its older publication on another partition (the scorer's upsert keeps the
    last one it applies).

    Column-wise in bulk: each column becomes a list, the features what `event.features_of` makes of the slice's
    matrix (v2's arrays, v3's packed columns), and each message is one encode; no pydantic model and no dict per
    row. The JSON validates back to the rows `feature_payloads` encodes one event each (tests/features check it).
    """
    if frame.empty:
        return []
    days = np.unique(_days(frame))
    if len(days) != 1:
        raise ValueError(f"a features message carries one day's rows, not {len(days)} days'")
    day = str(days[0])
    prefix = event.key_of(day, "")
    unordered = frame["model_id"].tolist()
    slots = partition_slots([(prefix + m).encode() for m in unordered], partitions)
    # the rows by partition: each column is taken in this order (the frame itself is not reordered: that copied
    # every column, the close's wide rows included)
    order = np.argsort(slots, kind="stable")
    ids = [unordered[i] for i in order.tolist()]
    # one row per feature, contiguous: orjson writes C-contiguous arrays only
    x = np.vstack([frame[name].to_numpy(dtype="float64", na_value=np.nan)[order] for name in FEATURE_COLUMNS])
    features = event.features_of(FEATURE_COLUMNS, x)
    renamed = renamed_from or {}
    columns: dict[str, list[Any]] = {
        "downloads": _nullable_ints(frame, "downloads", order),
        "downloads_all_time": _nullable_ints(frame, "downloads_all_time", order),
        "likes": _nullable_ints(frame, "likes", order),
        "trending_rank": _nullable_ints(frame, "trending_rank", order),
        "pipeline_tag": _nullable_strings(frame, "pipeline_tag", order),
        "library_name": _nullable_strings(frame, "library_name", order),
        "author": _nullable_strings(frame, "author", order),
        "created_at": _utc_times(frame, "created_at", order),
        "last_modified": _utc_times(frame, "last_modified", order),
    }
    encode = EventEncoder(event, raw=("tags",)).encode
    tags = _tags_json(frame, order)

    def message(lo: int, hi: int) -> tuple[bytes, bytes]:
        part = ids[lo:hi]
        fields: dict[str, Any] = {name: values[lo:hi] for name, values in columns.items()}
        fields |= {
            "snapshot_date": day,
            "day_models": day_models,
            "model_id": part,
            "renamed_from": {m: renamed[m] for m in part if m in renamed} if renamed else {},
            "features": features(lo, hi),
        }
        return ModelFeaturesBatch.key_of(day, part[0]).encode(), encode(fields, f"[{','.join(tags[lo:hi])}]")

    # each partition's rows (contiguous now, in the frame's order within it); the ingestor's row checks bound a
    # row's text well below the byte limit (MAX_ROW_TEXT)
    return bounded_messages(
        runs_of(slots[order]),
        message,
        max_rows=rows,
        max_bytes=FEATURES_BATCH_BYTES,
        row_name=lambda i: f"features of {ids[i]!r}",
    )
