"""One served day: sort orders by numpy argsort, filters as boolean masks, pages rendered by slicing.

Orders and filtered orders are computed once per day and cached, so paging through 2M models costs
one slice and one 1000-row render per request.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from hubpulse.hub.live import PLACEHOLDER_CREATED_AT, PLACEHOLDER_TS
from hubpulse_common.synthetic import DayColumns

I64 = npt.NDArray[np.int64]
T = TypeVar("T")

# huggingface_hub sends these names (hf_api.list_models maps its snake_case sorts to them); `sort=trending`
# and other spellings are refused by huggingface.co (hub-docs issue #1090).
SORTS = ("downloads", "likes", "trendingScore", "createdAt", "lastModified", "likes7d")
# Fields a list page carries by default, as huggingface.co does without expand
DEFAULT_FIELDS = ("likes", "trendingScore", "private", "downloads", "tags", "pipeline_tag", "library_name", "createdAt")
FULL_FIELDS = (*DEFAULT_FIELDS, "author", "lastModified", "sha", "gated", "disabled", "siblings")
DETAIL_FIELDS = (*FULL_FIELDS, "downloadsAllTime")
SERVED_FIELDS = frozenset((*DETAIL_FIELDS, "likes7d"))
# Accepted on a single model only: huggingface.co refuses them on lists (huggingface_hub PR #3182)
DETAIL_ONLY_EXPAND = frozenset({"baseModels", "childrenModelCount", "usedStorage"})
# Every expand value huggingface_hub knows; those we do not serve are accepted and left out
KNOWN_EXPAND = (
    SERVED_FIELDS
    | DETAIL_ONLY_EXPAND
    | {
        "cardData",
        "config",
        "evalResults",
        "gguf",
        "inference",
        "inferenceProviderMapping",
        "mask_token",
        "model-index",
        "resourceGroup",
        "safetensors",
        "spaces",
        "transformersInfo",
        "widgetData",
    }
)
_CACHE_SIZE = 32


@dataclass(frozen=True)
class Query:
    search: str | None = None
    author: str | None = None
    filters: tuple[str, ...] = ()
    pipeline_tag: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.search or self.author or self.filters or self.pipeline_tag)


def _vocab_code(vocab: npt.NDArray[np.object_], value: str) -> int:
    hits = np.flatnonzero(vocab == value)
    return int(hits[0]) if len(hits) else -2  # -2 matches nothing, not even "missing" (-1)


class Snapshot:
    def __init__(self, day: int, cols: DayColumns) -> None:
        self.day, self.cols = day, cols
        self._lock = threading.Lock()
        self._orders: dict[tuple[str, bool], I64] = {}
        self._selections: OrderedDict[tuple[Query, str | None, bool], I64] = OrderedDict()
        self._memo: OrderedDict[tuple[Any, ...], object] = OrderedDict()

    def __len__(self) -> int:
        return len(self.cols)

    def sort_key(self, sort: str) -> npt.NDArray[Any]:
        c = self.cols
        if sort == "trendingScore" and bool((c.trending_rank > 0).any()):
            # a ranked list (history files) wins over the score; unranked models follow by score
            big = float(c.trending_score.max(initial=0)) + float(c.trending_rank.max()) + 1.0
            return np.where(c.trending_rank > 0, big - c.trending_rank, c.trending_score).astype(np.float64)
        keys: dict[str, npt.NDArray[Any]] = {
            "downloads": c.downloads,
            "likes": c.likes,
            "trendingScore": c.trending_score,
            "likes7d": c.likes7d,
            "createdAt": np.maximum(c.created_ts, PLACEHOLDER_TS),  # NaN (unknown) stays NaN
            "lastModified": np.where(c.last_modified_ms >= 0, c.last_modified_ms, np.nan),
        }
        return keys[sort]

    def order(self, sort: str, descending: bool) -> I64:
        """Row positions by `sort`; ties keep model order (stable sort), unknown values go last."""
        with self._lock:
            cached = self._orders.get((sort, descending))
        if cached is not None:
            return cached
        key = self.sort_key(sort).astype(np.float64)
        order = np.argsort(-key if descending else key, kind="stable").astype(np.int64)
        with self._lock:
            self._orders[(sort, descending)] = order
        return order

    def mask(self, q: Query) -> npt.NDArray[np.bool_]:
        c = self.cols
        keep = np.ones(len(c), dtype=bool)
        if q.author:
            keep &= c.author_code == _vocab_code(c.author_vocab, q.author)
        if q.pipeline_tag:
            keep &= c.pipeline_code == _vocab_code(c.pipeline_vocab, q.pipeline_tag)
        if q.filters:
            wanted = set(q.filters)
            matching = [k for k, tags in enumerate(c.tags_vocab) if wanted <= set(tags)]
            keep &= np.isin(c.tags_code, np.array(matching, dtype=np.int32))
        if q.search:
            rows = np.flatnonzero(keep)
            hit = pd.Series(c.model_id[rows], dtype=object).str.contains(q.search, case=False, regex=False)
            keep[rows[~hit.to_numpy(dtype=bool)]] = False
        return keep

    def selection(self, q: Query, sort: str | None, descending: bool) -> I64:
        """Row positions matching q in serving order (model order when sort is None)."""
        key = (q, sort, descending)
        with self._lock:
            cached = self._selections.get(key)
            if cached is not None:
                self._selections.move_to_end(key)
                return cached
        if sort is None:
            rows = np.arange(len(self), dtype=np.int64) if q.empty else np.flatnonzero(self.mask(q)).astype(np.int64)
        else:
            order = self.order(sort, descending)
            rows = order if q.empty else order[self.mask(q)[order]]
        with self._lock:
            self._selections[key] = rows
            while len(self._selections) > _CACHE_SIZE:
                self._selections.popitem(last=False)
        return rows

    def memo(self, key: tuple[Any, ...], build: Callable[[], T]) -> T:
        """A small per-day LRU for derived arrays (live orders of a walk), built outside the lock."""
        with self._lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return cast(T, self._memo[key])
        value = build()
        with self._lock:
            self._memo[key] = value
            while len(self._memo) > _CACHE_SIZE:
                self._memo.popitem(last=False)
        return value

    def find(self, model_index: int) -> int | None:
        pos = int(np.searchsorted(self.cols.model_index, model_index))
        return pos if pos < len(self) and self.cols.model_index[pos] == model_index else None

    def render(self, rows: I64, fields: tuple[str, ...]) -> list[dict[str, Any]]:
        """JSON-ready dicts for the given rows: one column at a time, then zipped (fast for 1000 rows)."""
        c = self.cols
        ids = c.model_id[rows].tolist()
        columns: dict[str, list[Any]] = {"_id": _object_ids(c, rows), "id": ids}
        for field in fields:
            columns[field] = _field(c, rows, field, ids)
        columns["modelId"] = ids
        names = list(columns)
        return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def object_id_seconds(c: DayColumns, rows: I64) -> I64:
    """The creation second the ObjectIds of `rows` carry: never before the placeholder date (older repos got that).
    Of those rows only: computed for the whole day, a page's cost grew with the Hub's size."""
    seconds: I64 = np.nan_to_num(np.maximum(c.created_ts[rows], PLACEHOLDER_TS), nan=0.0).astype(np.int64) & 0xFFFFFFFF
    return seconds


def _object_ids(c: DayColumns, rows: I64) -> list[str]:
    """Stable 24-hex ids like Mongo ObjectIds: creation second, then the model index."""
    created = object_id_seconds(c, rows)
    return [f"{t:08x}{i:016x}" for t, i in zip(created.tolist(), c.model_index[rows].tolist(), strict=True)]


def _list(values: npt.NDArray[Any]) -> list[Any]:
    out: list[Any] = values.tolist()
    return out


def _categorical(codes: npt.NDArray[np.int32], vocab: npt.NDArray[np.object_]) -> list[Any]:
    names = vocab.tolist()
    return [names[k] if k >= 0 else None for k in codes.tolist()]


def _iso(ms: I64) -> list[str | None]:
    text = np.datetime_as_string(np.maximum(ms, 0).astype("datetime64[ms]"), unit="ms")
    return [f"{t}Z" if m >= 0 else None for t, m in zip(text.tolist(), ms.tolist(), strict=True)]


def _field(c: DayColumns, rows: I64, field: str, ids: list[str]) -> list[Any]:
    n = len(rows)
    match field:
        case "likes":
            return _list(c.likes[rows])
        case "downloads":
            return _list(c.downloads[rows])
        case "trendingScore":
            return _list(c.trending_score[rows])
        case "likes7d":
            return _list(c.likes7d[rows])
        case "downloadsAllTime":
            return [v if v >= 0 else None for v in c.downloads_all_time[rows].tolist()]
        case "private" | "gated" | "disabled":
            return [False] * n
        case "tags":
            return [list(c.tags_vocab[k]) for k in c.tags_code[rows].tolist()]
        case "pipeline_tag":
            return _categorical(c.pipeline_code[rows], c.pipeline_vocab)
        case "library_name":
            return _categorical(c.library_code[rows], c.library_vocab)
        case "author":
            return _categorical(c.author_code[rows], c.author_vocab)
        case "createdAt":
            old = (c.created_ts[rows] < PLACEHOLDER_TS).tolist()
            return [PLACEHOLDER_CREATED_AT if o else v for o, v in zip(old, c.created_at[rows].tolist(), strict=True)]
        case "lastModified":
            return _iso(c.last_modified_ms[rows])
        case "sha":
            stamps = c.last_modified_ms[rows].tolist()
            return [
                hashlib.sha1(f"{m}@{t}".encode(), usedforsecurity=False).hexdigest()
                for m, t in zip(ids, stamps, strict=True)
            ]
        case "siblings":
            return [[] for _ in range(n)]
    raise KeyError(field)
