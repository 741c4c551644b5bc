"""Where the replay Hub's days come from: a history file (CONTRACT format) or a SyntheticHub."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from hubpulse_common.history import load_history
from hubpulse_common.synthetic import DayColumns, SyntheticHub


class DaySource(Protocol):
    """A sequence of daily snapshots; day i is `columns(i)`, rows in model-index order."""

    description: str

    @property
    def dates(self) -> list[dt.date]: ...

    def columns(self, day: int) -> DayColumns: ...

    def index_of(self, model_id: str) -> int | None: ...


@runtime_checkable
class Extendable(Protocol):
    """A source that can make days past its last one (a synthetic Hub); a history file cannot."""

    def extend(self, days: int) -> None: ...


class SyntheticSource:
    def __init__(self, hub: SyntheticHub) -> None:
        self.hub = hub
        self._lock = threading.Lock()  # an extension and an id lookup never see each other half done
        self._index: dict[str, int] | None = None
        self._describe()

    def _describe(self) -> None:
        hub = self.hub
        self.description = f"synthetic: {hub.n_models} models, {hub.days} days, seed {hub.seed}"

    @property
    def dates(self) -> list[dt.date]:
        return self.hub.dates

    def columns(self, day: int) -> DayColumns:
        return self.hub.day_columns(day)

    def extend(self, days: int) -> None:
        with self._lock:
            self.hub.extend(days)
            self._index = None  # new models joined
            self._describe()

    def index_of(self, model_id: str) -> int | None:
        with self._lock:
            if self._index is None:  # built on the first single-model lookup only: 2M ids cost ~1 s
                self._index = {m: i for i, m in enumerate(self.hub.model_id.tolist())}
            return self._index.get(model_id)


def _codes(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return codes.astype(np.int32), np.asarray(uniques, dtype=object)


def _iso_ms(stamps: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Hub-style `2024-01-02T03:04:05.000Z` strings (None when unknown) and epoch seconds (NaN)."""
    parsed = pd.to_datetime(stamps, utc=True, errors="coerce", format="mixed")
    iso = parsed.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
    iso_arr = np.asarray(iso.astype(object).where(parsed.notna(), None), dtype=object)
    seconds = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64, na_value=np.nan)
    return iso_arr, seconds


def read_history(path: Path) -> pd.DataFrame:
    """A CONTRACT history file, validated like every other reader of one (`hubpulse_common.history.load_history`:
    errors name the line and column, duplicates are refused), with calendar dates as the Hub serves them."""
    frame = load_history(path)
    frame["snapshot_date"] = frame["snapshot_date"].dt.date
    return frame


class HistorySource:
    """Replays a history file: day i is the i-th distinct snapshot_date; absent models are not served."""

    def __init__(self, frame: pd.DataFrame, description: str = "history") -> None:
        self.description = description
        frame = frame.copy()
        # model index = order of first appearance, then creation: stands in for the Hub's ObjectId order
        first_seen = frame.groupby("model_id")["snapshot_date"].transform("min")
        frame["_first"] = first_seen
        order = frame.drop_duplicates("model_id").sort_values(["_first", "created_at", "model_id"], na_position="last")
        ids = order["model_id"].to_numpy(dtype=object)
        self._index = {m: i for i, m in enumerate(ids.tolist())}
        frame["model_index"] = frame["model_id"].map(self._index).astype(np.int64)
        frame["author"] = frame["model_id"].str.split("/", n=1).str[0].where(frame["model_id"].str.contains("/"))
        self._author_code, self._author_vocab = _codes(frame["author"])
        self._pipeline_code, self._pipeline_vocab = _codes(frame["pipeline_tag"])
        self._library_code, self._library_vocab = _codes(frame["library_name"])
        self._created_iso, self._created_ts = _iso_ms(frame["created_at"])
        self._frame = frame.reset_index(drop=True)
        self._dates: list[dt.date] = sorted(frame["snapshot_date"].unique())
        self._rows_by_date = {d: np.asarray(r) for d, r in self._frame.groupby("snapshot_date").indices.items()}
        pairs = {(int(self._library_code[i]), int(self._pipeline_code[i])) for i in range(len(frame))}
        self._tag_pairs = sorted(pairs)

    @property
    def dates(self) -> list[dt.date]:
        return self._dates

    def index_of(self, model_id: str) -> int | None:
        return self._index.get(model_id)

    def _likes_on(self, date: dt.date) -> pd.Series:
        rows = self._rows_by_date.get(date)
        if rows is None:
            return pd.Series(dtype=np.int64)
        part = self._frame.iloc[rows]
        return pd.Series(part["likes"].to_numpy(), index=part["model_index"].to_numpy())

    def columns(self, day: int) -> DayColumns:
        date = self._dates[day]
        rows = self._rows_by_date[date]
        part = self._frame.iloc[rows]
        order = np.argsort(part["model_index"].to_numpy(), kind="stable")
        rows, part = rows[order], part.iloc[order]
        index = part["model_index"].to_numpy(dtype=np.int64)
        likes = part["likes"].fillna(0).to_numpy(dtype=np.int64)
        week_ago = self._likes_on(date - dt.timedelta(days=7)).reindex(index)
        likes7d = np.where(week_ago.notna(), likes - week_ago.fillna(0).to_numpy(dtype=np.int64), 0)
        lib, pipe = self._library_code[rows], self._pipeline_code[rows]
        tag_lookup = {pair: k for k, pair in enumerate(self._tag_pairs)}
        tags_code = np.array([tag_lookup[(int(a), int(b))] for a, b in zip(lib, pipe, strict=True)], dtype=np.int32)
        tags_vocab = tuple(
            tuple(
                str(v)
                for v in (self._library_vocab[a] if a >= 0 else None, self._pipeline_vocab[b] if b >= 0 else None)
                if v is not None
            )
            for a, b in self._tag_pairs
        )
        return DayColumns(
            date=date,
            model_index=index,
            model_id=part["model_id"].to_numpy(dtype=object),
            author_code=self._author_code[rows],
            author_vocab=self._author_vocab,
            pipeline_code=pipe,
            pipeline_vocab=self._pipeline_vocab,
            library_code=lib,
            library_vocab=self._library_vocab,
            tags_code=tags_code,
            tags_vocab=tags_vocab,
            downloads=part["downloads"].fillna(0).to_numpy(dtype=np.int64),
            downloads_all_time=part["downloads_all_time"].fillna(-1).to_numpy(dtype=np.int64),
            likes=likes,
            likes7d=likes7d.astype(np.int64),
            trending_score=np.maximum(likes7d, 0).astype(np.int64),
            trending_rank=part["trending_rank"].fillna(0).to_numpy(dtype=np.int64),
            created_at=self._created_iso[rows],
            created_ts=self._created_ts[rows],
            last_modified_ms=np.full(len(rows), -1, dtype=np.int64),
        )


def history_source(path: Path) -> HistorySource:
    return HistorySource(read_history(path), description=f"history: {path.name}")
