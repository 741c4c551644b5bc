"""Load a history file (CONTRACT format, plain or gzip CSV) into a typed DataFrame, validating every cell.

Typed result, one row per model-day:
    snapshot_date       datetime64[ns], midnight (a calendar day)
    model_id            object (str)
    downloads, downloads_all_time, likes, trending_rank
                        float64 (NaN = missing; float so that missing needs no nullable dtype)
    pipeline_tag, library_name
                        object (str or NaN)
    created_at          datetime64[ns] naive UTC (NaT = missing)
Optional columns absent from the file are added as all-missing, so callers see one shape.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hubpulse_common.errors import InputError

REQUIRED_COLUMNS: tuple[str, ...] = ("snapshot_date", "model_id", "downloads", "likes")
# huggingface.co's createdAt for every repo created before it stored creation dates (e.g. openai-community/gpt2;
# docs/decisions/replay-hub.md): "older than March 2022", not a creation time. Read as unknown everywhere.
HUB_CREATED_AT_PLACEHOLDER = datetime(2022, 3, 2, 23, 29, 4, tzinfo=UTC)


def known_created_at(value: datetime | None) -> datetime | None:
    """The creation time, or None when unknown (missing or the Hub's placeholder)."""
    return None if value is None or value == HUB_CREATED_AT_PLACEHOLDER else value


OPTIONAL_COLUMNS: tuple[str, ...] = (
    "downloads_all_time",
    "pipeline_tag",
    "library_name",
    "created_at",
    "trending_rank",
)
HISTORY_COLUMNS: tuple[str, ...] = (
    "snapshot_date",
    "model_id",
    "downloads",
    "downloads_all_time",
    "likes",
    "pipeline_tag",
    "library_name",
    "created_at",
    "trending_rank",
)
_COUNT_COLUMNS = ("downloads", "downloads_all_time", "likes")
_TEXT_COLUMNS = ("pipeline_tag", "library_name")


def _fail(name: str, row: int, column: str, message: str) -> InputError:
    # Line 1 is the header, so data row i (0-based) sits on line i + 2.
    return InputError(f"{name} line {row + 2}, column {column}: {message}")


def _first_bad(bad: np.ndarray | pd.Series) -> int | None:
    idx = np.flatnonzero(np.asarray(bad))
    return int(idx[0]) if idx.size else None


def _parse_int(raw: pd.Series, name: str, column: str, *, min_value: float) -> pd.Series:
    present = raw != ""
    values = pd.to_numeric(raw.where(present), errors="coerce")
    row = _first_bad(present & (values.isna() | (values != np.floor(values))))
    if row is not None:
        raise _fail(name, row, column, f"{raw.iloc[row]!r} is not an integer")
    row = _first_bad(values < min_value)
    if row is not None:
        raise _fail(name, row, column, f"{raw.iloc[row]!r} is below {min_value:g}")
    return values.astype("float64")


def _parse_dates(raw: pd.Series, name: str, column: str, *, day_only: bool) -> pd.Series:
    present = raw != ""
    if day_only:
        values = pd.to_datetime(raw.where(present), format="%Y-%m-%d", errors="coerce")
        what = "is not a date (YYYY-MM-DD)"
    else:
        values = pd.to_datetime(raw.where(present), format="ISO8601", utc=True, errors="coerce")
        values = values.dt.tz_localize(None)
        what = "is not an ISO-8601 time"
    row = _first_bad(present & values.isna())
    if row is not None:
        raise _fail(name, row, column, f"{raw.iloc[row]!r} {what}")
    return values.astype("datetime64[ns]")


def _read_raw(path: Path) -> pd.DataFrame:
    with path.open("rb") as fh:
        magic = fh.read(2)
    try:
        return pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_values=[],
            compression="gzip" if magic == b"\x1f\x8b" else None,
            usecols=lambda c: c.strip() in HISTORY_COLUMNS,
        )
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{path.name}: the file is empty (a CSV header is expected)") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, gzip.BadGzipFile, EOFError) as exc:
        raise InputError(f"{path.name}: not a readable CSV history file ({exc})") from exc


def _canonical_order(history: pd.DataFrame) -> pd.DataFrame:
    """Every typed history in one row order: XGBoost's row sampling (and so a seeded model) depends on the order
    of its rows, so the same history must train the same model wherever it comes from and however it was sorted."""
    return history.sort_values(["snapshot_date", "model_id"], kind="stable", ignore_index=True)


def parse_history(raw: pd.DataFrame, name: str = "<history>") -> pd.DataFrame:
    """Validate and type a frame of strings (as read from CSV; '' = missing). `name` is used in errors.

    Rows come back sorted by (snapshot_date, model_id); errors name the line as it is in the file.
    """
    raw = raw.rename(columns=lambda c: c.strip())
    for column in REQUIRED_COLUMNS:
        if column not in raw.columns:
            raise InputError(f"{name} line 1: required column {column!r} is missing from the header")
    raw = raw.reset_index(drop=True)
    out = pd.DataFrame(index=raw.index)
    out["snapshot_date"] = _parse_dates(raw["snapshot_date"], name, "snapshot_date", day_only=True)
    row = _first_bad(out["snapshot_date"].isna())
    if row is not None:
        raise _fail(name, row, "snapshot_date", "is empty")
    model_id = raw["model_id"].str.strip()
    row = _first_bad(model_id == "")
    if row is not None:
        raise _fail(name, row, "model_id", "is empty")
    out["model_id"] = model_id
    for column in HISTORY_COLUMNS[2:]:
        col = raw[column] if column in raw.columns else pd.Series("", index=raw.index)
        if column in _COUNT_COLUMNS:
            out[column] = _parse_int(col, name, column, min_value=0)
        elif column == "trending_rank":
            out[column] = _parse_int(col, name, column, min_value=1)
        elif column == "created_at":
            out[column] = _without_placeholder(_parse_dates(col, name, column, day_only=False))
        else:
            out[column] = col.where(col != "", np.nan)
    dup = out.duplicated(["snapshot_date", "model_id"])
    row = _first_bad(dup)
    if row is not None:
        raise _fail(name, row, "model_id", f"{model_id.iloc[row]!r} appears twice on the same snapshot_date")
    return _canonical_order(out)


def _without_placeholder(created: pd.Series) -> pd.Series:
    """NaT where a naive-UTC created_at column holds the Hub's placeholder date."""
    return created.mask(created == pd.Timestamp(HUB_CREATED_AT_PLACEHOLDER.replace(tzinfo=None)))


def load_history(path: str | Path) -> pd.DataFrame:
    """Read and validate a history file; errors raise InputError naming file, line and column."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such history file")
    return parse_history(_read_raw(path), path.name)


def history_from_columns(columns: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """load_history's typed frame, in its row order, from values that are already typed (e.g. database rows).

    Dates and datetimes (naive UTC or aware), numbers, text; None is missing. Optional columns may be absent.
    """
    n = len(columns["model_id"])
    out = pd.DataFrame(index=pd.RangeIndex(n))
    out["snapshot_date"] = pd.to_datetime(pd.Series(columns["snapshot_date"], dtype=object)).astype("datetime64[ns]")
    out["model_id"] = pd.Series(columns["model_id"], dtype=object)
    for column in HISTORY_COLUMNS[2:]:
        values = pd.Series(columns.get(column, [None] * n), dtype=object)
        if column in (*_COUNT_COLUMNS, "trending_rank"):
            out[column] = pd.to_numeric(values).astype("float64")
        elif column == "created_at":
            parsed = pd.to_datetime(values, utc=True).dt.tz_localize(None).astype("datetime64[ns]")
            out[column] = _without_placeholder(parsed)
        else:
            out[column] = values.where(values.notna(), np.nan)
    return _canonical_order(out)


def has_trending_ranks(history: pd.DataFrame) -> bool:
    """True when the history carries the Hub's trending ranks (needed by the `trending` label)."""
    return "trending_rank" in history.columns and bool(history["trending_rank"].notna().any())
