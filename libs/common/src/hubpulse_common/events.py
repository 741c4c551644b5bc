"""Every event that crosses Kafka, defined once. Each class names its topic and its key.

Versioning: the topic name carries the major version (`hub.snapshots.v1`); `schema_version` inside
the value carries the minor one. Consumers ignore unknown fields, so adding an optional field is a
minor bump; removing or retyping one is a new topic (`.v2`). The AsyncAPI document in
docs/asyncapi.yaml is generated from these classes (`python -m hubpulse_common.asyncapi`).
"""

from __future__ import annotations

import binascii
import math
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

import numpy as np
import numpy.typing as npt
import pybase64
from pydantic import BaseModel, ConfigDict, Field, JsonValue, PrivateAttr, model_validator

# Every event is published with this Kafka header carrying its `schema_version` (and `x-request-id`, the trace id).
SCHEMA_VERSION_HEADER = "x-schema-version"


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_event_id() -> str:
    return secrets.token_hex(16)  # as logging.new_trace_id


class Event(BaseModel):
    """Base of every Kafka value: versioned, timestamped, and ignorant of fields it does not know."""

    # Fields with defaults are still always written, so the documented schema marks them required.
    model_config = ConfigDict(extra="ignore", frozen=True, json_schema_serialization_defaults_required=True)

    topic: ClassVar[str]
    key_field: ClassVar[str] = "model_id"

    schema_version: int = 1
    occurred_at: datetime = Field(default_factory=utcnow)

    def key(self) -> str:
        return str(getattr(self, self.key_field))


# where a snapshot came from: the Hub's walk, `hubpulse import` of a history file, or a benchmark
SnapshotSource = Literal["hub", "import", "bench"]


class ModelSnapshot(Event):
    """One model's Hub statistics on one day. Natural key: (model_id, snapshot_date)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "schema_version": 1,
                    "occurred_at": "2026-12-03T04:12:09.512Z",
                    "model_id": "Qwen/Qwen3-0.6B",
                    "snapshot_date": "2026-12-03",
                    "downloads": 8214530,
                    "downloads_all_time": 41268877,
                    "likes": 812,
                    "trending_score": 41.0,
                    "trending_rank": 7,
                    "pipeline_tag": "text-generation",
                    "library_name": "transformers",
                    "author": "Qwen",
                    "tags": ["transformers", "safetensors", "qwen3", "text-generation", "license:apache-2.0"],
                    "created_at": "2025-04-27T03:40:08Z",
                    "last_modified": "2025-07-26T03:46:27Z",
                    "source": "hub",
                    "renamed_from": None,
                }
            ]
        }
    )

    topic: ClassVar[str] = "hub.snapshots.v1"

    model_id: str
    snapshot_date: date
    downloads: int = Field(ge=0, description="Downloads over the last 30 days, as the Hub reports them")
    downloads_all_time: int | None = Field(default=None, ge=0)
    likes: int = Field(ge=0)
    trending_score: float | None = None
    trending_rank: int | None = Field(default=None, ge=1)
    pipeline_tag: str | None = None
    library_name: str | None = None
    author: str | None = None
    tags: list[str] = Field(default_factory=list)
    created_at: datetime | None = None
    last_modified: datetime | None = None
    source: SnapshotSource = "hub"
    renamed_from: str | None = Field(
        default=None,
        description="The model's previous name, on its first snapshot under a new name (the Hub renamed the "
        "repository; its `_id` is the same): consumers move the old name's history to `model_id`",
    )


# What one hub.snapshots.v2 message carries at most: rows, and bytes of JSON (under Kafka's default 1 MiB
# message.max.bytes and aiokafka's record batch: an encoder splits a message that would be larger).
SNAPSHOTS_BATCH_ROWS = 1000
SNAPSHOTS_BATCH_BYTES = 1_000_000

NonNegative = Annotated[int, Field(ge=0)]
PositiveRank = Annotated[int, Field(ge=1)]


class _Rows(Event):
    """A message of many models, column by column: row `i` is `model_id[i]`'s; keyed by its first model."""

    if TYPE_CHECKING:  # each message declares the field itself, where its documented schema places it
        model_id: list[str]

    def key(self) -> str:
        return self.model_id[0]

    @property
    def rows(self) -> int:
        return len(self.model_id)

    def _check_columns(self, columns: Sequence[str], uneven: Sequence[str] = ()) -> None:
        """The columns line up with `model_id`, each model once (`uneven`: more columns found not to)."""
        uneven = [name for name in columns if len(getattr(self, name)) != self.rows] + list(uneven)
        if uneven:
            raise ValueError(f"every column needs {self.rows} values (one per model_id): {', '.join(uneven)} do not")
        if len(set(self.model_id)) != self.rows:
            raise ValueError("model_id repeats a model: a message carries each model-day once")


class _ModelColumns(_Rows):
    """The columns that hub.snapshots.v2 and hub.features.v2 both carry: one value per row (the `i`-th of each is
    the `i`-th model's), and the rows' renames."""

    model_id: list[str] = Field(min_length=1, description="One entry per row; unique within a message")
    pipeline_tag: list[str | None]
    library_name: list[str | None]
    author: list[str | None]
    tags: list[list[str]]
    created_at: list[datetime | None]
    last_modified: list[datetime | None]
    renamed_from: dict[str, str] = Field(
        default_factory=dict,
        description="new name -> previous name, for the rows that are a model's first under a new name on this day "
        "(the Hub renamed the repository; its `_id` is the same): consumers move what they keep under the old name "
        "to the new one",
    )

    def _check_columns(self, columns: Sequence[str], uneven: Sequence[str] = ()) -> None:
        """As every columnar message, and the renames are of the message's own rows."""
        super()._check_columns(columns, uneven)
        if stray := set(self.renamed_from) - set(self.model_id):
            raise ValueError(f"renamed_from names models not in the message: {sorted(stray)[:3]}")


class ModelSnapshotBatch(_ModelColumns):
    """Many models' Hub statistics on one day, column by column (`hub.snapshots.v2`).

    The same facts as `hub.snapshots.v1`, without a message per model: column `i` of every list is the `i`-th
    model (a field of `ModelSnapshot` each; `renamed_from` maps the renamed rows' new name to the old one). Natural
    key of each row: (model_id, snapshot_date); a row may arrive again (a redelivered message, a walk resumed or
    repeated) and consumers upsert it.

    Kafka key: the first row's `model_id`. Every row of a message is a model that the default partitioner (murmur2
    of the model id) puts on the same partition as that key: each model's snapshots stay on one partition, in
    order, as on v1. At most SNAPSHOTS_BATCH_ROWS rows and SNAPSHOTS_BATCH_BYTES bytes a message.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "schema_version": 1,
                    "occurred_at": "2026-12-03T04:12:09.512Z",
                    "snapshot_date": "2026-12-03",
                    "source": "hub",
                    "model_id": ["Qwen/Qwen3-0.6B", "acme/tiny-bert"],
                    "downloads": [8214530, 12],
                    "downloads_all_time": [41268877, None],
                    "likes": [812, 0],
                    "trending_score": [41.0, None],
                    "trending_rank": [7, None],
                    "pipeline_tag": ["text-generation", "fill-mask"],
                    "library_name": ["transformers", None],
                    "author": ["Qwen", "acme"],
                    "tags": [["transformers", "safetensors", "qwen3", "text-generation", "license:apache-2.0"], []],
                    "created_at": ["2025-04-27T03:40:08Z", "2026-12-01T10:00:00Z"],
                    "last_modified": ["2025-07-26T03:46:27Z", None],
                    "renamed_from": {"acme/tiny-bert": "acme/bert-tiny"},
                }
            ]
        }
    )

    topic: ClassVar[str] = "hub.snapshots.v2"

    snapshot_date: date
    source: SnapshotSource = "hub"
    downloads: list[NonNegative] = Field(description="Downloads over the last 30 days, as the Hub reports them")
    downloads_all_time: list[NonNegative | None]
    likes: list[NonNegative]
    trending_score: list[float | None]
    trending_rank: list[PositiveRank | None]

    @model_validator(mode="after")
    def _columns_line_up(self) -> ModelSnapshotBatch:
        self._check_columns(SNAPSHOT_ROW_COLUMNS)
        return self

    def as_v1(self) -> list[ModelSnapshot]:
        """Each row as the `hub.snapshots.v1` event it stands for (for code that reads a few rows one at a time)."""
        columns = [getattr(self, name) for name in SNAPSHOT_ROW_COLUMNS]
        return [
            ModelSnapshot(
                occurred_at=self.occurred_at,
                model_id=model_id,
                snapshot_date=self.snapshot_date,
                source=self.source,
                renamed_from=self.renamed_from.get(model_id),
                **{name: column[i] for name, column in zip(SNAPSHOT_ROW_COLUMNS, columns, strict=True)},
            )
            for i, model_id in enumerate(self.model_id)
        ]

    @classmethod
    def of_many(cls, rows: Sequence[ModelSnapshot], size: int = SNAPSHOTS_BATCH_ROWS) -> list[ModelSnapshotBatch]:
        """The messages carrying `rows` (`hub.snapshots.v1` events of any days, a model-day possibly again): a day
        and source each, up to `size` rows, a model once, in the rows' order. For tests and adapters, like `of`."""
        chunks: dict[tuple[date, str], dict[str, ModelSnapshot]] = {}  # each chunk's rows by model id
        out: list[ModelSnapshotBatch] = []
        for r in rows:
            chunk = chunks.setdefault((r.snapshot_date, r.source), {})
            if len(chunk) == size or r.model_id in chunk:
                out.append(cls.of(list(chunk.values())))
                chunk.clear()
            chunk[r.model_id] = r
        return out + [cls.of(list(chunk.values())) for chunk in chunks.values() if chunk]

    @classmethod
    def of(cls, rows: Sequence[ModelSnapshot], **extra: Any) -> ModelSnapshotBatch:
        """The message carrying `rows` (`hub.snapshots.v1` events of one day and source). For tests and adapters:
        the ingestor encodes its rows directly."""
        heads = {(r.snapshot_date, r.source) for r in rows}
        if len(heads) != 1:
            raise ValueError(f"a batch carries one day's rows of one source, not {sorted(heads)}")
        day, source = heads.pop()
        return cls(
            snapshot_date=day,
            source=source,
            model_id=[r.model_id for r in rows],
            renamed_from={r.model_id: r.renamed_from for r in rows if r.renamed_from},
            **{name: [getattr(r, name) for r in rows] for name in SNAPSHOT_ROW_COLUMNS},
            **extra,
        )


class DayIngested(Event):
    """The ingestor has published every snapshot of a day: a walk of the whole Hub dated that day finished (or
    `hubpulse import` wrote the day), and the broker acknowledged its last batch. Key: snapshot_date. Natural
    key: snapshot_date (a later signal for the same day, after another walk, carries the new total).

    The features service closes the day once it has streamed `models` model-days of it, instead of waiting for
    the day to go quiet."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "schema_version": 1,
                    "occurred_at": "2026-12-03T04:31:52.004Z",
                    "snapshot_date": "2026-12-03",
                    "models": 2041735,
                    "source": "hub",
                }
            ]
        }
    )

    topic: ClassVar[str] = "hub.ingest.v1"
    key_field: ClassVar[str] = "snapshot_date"

    snapshot_date: date
    models: int = Field(
        ge=0,
        description="Distinct models the ingestor has stored and published for the day, all walks and imports "
        "together: what a consumer of hub.snapshots.v2 (or v1) has for the day once it has read them all",
    )
    source: SnapshotSource = Field(description="What finished the day: the Hub's walk, or an import")


class ModelFeatures(Event):
    """Velocity features of one model on one day. Natural key: (model_id, snapshot_date)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "schema_version": 1,
                    "occurred_at": "2026-12-03T04:31:55.004Z",
                    "model_id": "Qwen/Qwen3-0.6B",
                    "snapshot_date": "2026-12-03",
                    "features": {
                        "log_downloads": 15.921,
                        "growth_rate_7d": 0.083,
                        "likes_7d": 64.0,
                        "trending_rank": 7.0,
                        "age_days": 585.0,
                        "day_pct_log_downloads": 0.998,
                        "rank_change_7d": None,
                    },
                    "provisional": False,
                    "downloads": 8214530,
                    "downloads_all_time": 41268877,
                    "likes": 812,
                    "trending_rank": 7,
                    "pipeline_tag": "text-generation",
                    "library_name": "transformers",
                    "author": "Qwen",
                    "tags": ["transformers", "safetensors", "qwen3", "text-generation"],
                    "created_at": "2025-04-27T03:40:08Z",
                    "last_modified": "2025-07-26T03:46:27Z",
                    "renamed_from": None,
                    "day_models": 1843207,
                }
            ]
        }
    )

    topic: ClassVar[str] = "hub.features.v1"

    model_id: str
    snapshot_date: date
    features: dict[str, float | None]
    provisional: bool = Field(
        default=False,
        description="True would mean the day is still arriving (cross-sectional features ranking only part of it); "
        "hubpulse's features service publishes each model-day once, final, when its day closes",
    )
    # The day's raw stats ride along so that consumers (the scorer's catalog) need no join with the
    # features store.
    downloads: int | None = None
    downloads_all_time: int | None = None
    likes: int | None = None
    trending_rank: int | None = None
    pipeline_tag: str | None = None
    library_name: str | None = None
    author: str | None = None
    tags: list[str] = Field(default_factory=list)
    created_at: datetime | None = None
    last_modified: datetime | None = None
    renamed_from: str | None = Field(
        default=None,
        description="The model's previous name, on the features of the day it was first seen under `model_id` "
        "(from `hub.snapshots.v1`): consumers move what they keep under the old name to the new one",
    )
    day_models: int | None = Field(
        default=None,
        description="How many models the day has (set by the features close): a consumer that counts the day's "
        "model-days knows when it has them all",
    )


# Rows per hub.features.v2 message as the features close publishes them: ~0.9 KB of JSON a row with 69 features,
# so a message stays well under Kafka's default 1 MiB message limit.
FEATURES_BATCH_ROWS = 500
# ... and at most this many bytes: rows with long tag lists (the ingestor takes up to MAX_ROW_TEXT characters a
# row) would otherwise push a 500-row message over the limit, and the close would fail on it for good.
FEATURES_BATCH_BYTES = 1_000_000


class _FeaturesColumns(_ModelColumns):
    """What `hub.features.v2` and `v3` both carry (each documents it): all but `features`, whose columns v2 writes
    as lists and v3 packs."""

    snapshot_date: date
    day_models: int | None = Field(
        default=None,
        description="How many models the day has (set by the features close): a consumer that counts the day's "
        "model-days knows when it has them all",
    )
    downloads: list[int | None]
    downloads_all_time: list[int | None]
    likes: list[int | None]
    trending_rank: list[int | None]

    def _check_rows(self, uneven: Sequence[str]) -> None:
        self._check_columns(BATCH_ROW_COLUMNS, uneven)

    def key(self) -> str:
        return self.key_of(self.snapshot_date.isoformat(), self.model_id[0])

    @staticmethod
    def key_of(day: str, first_model_id: str) -> str:
        """The Kafka key of the message of `day` whose first row is `first_model_id` (for bulk encoders)."""
        return f"{day}/{first_model_id}"

    def feature_names(self) -> list[str]:
        raise NotImplementedError

    def feature_values(self, name: str) -> npt.NDArray[np.float64]:
        """Feature `name` of every row, as float64 (NaN where missing)."""
        raise NotImplementedError

    def feature_matrix(self) -> npt.NDArray[np.float64]:
        """Every feature's values, one row per feature in `feature_names()` order (read-only)."""
        return np.vstack([self.feature_values(name) for name in self.feature_names()])

    @classmethod
    def features_of(cls, names: Sequence[str], x: npt.NDArray[np.float64]) -> Callable[[int, int], dict[str, Any]]:
        """The `features` field of rows lo..hi of `x` (C-contiguous, one row per feature of `names`, NaN where
        missing), as JSON-ready values for bulk encoders (orjson writes numpy arrays, NaN and infinities as null)."""
        raise NotImplementedError

    @classmethod
    def _features_field(cls, columns: dict[str, list[float | None]], rows: int) -> dict[str, Any]:
        """The `features` field of `of`'s rows, from a list per feature (None where missing)."""
        x = np.array(list(columns.values()), dtype="float64").reshape(len(columns), rows)  # None becomes NaN
        return cls.features_of(list(columns), x)(0, rows)

    def as_v1(self) -> list[ModelFeatures]:
        """Each row as the `hub.features.v1` event it stands for (for code that reads a few rows one at a time;
        bulk consumers read the columns)."""
        names = self.feature_names()
        values = [[None if math.isnan(v) else v for v in self.feature_values(name).tolist()] for name in names]
        return [
            ModelFeatures(
                occurred_at=self.occurred_at,
                model_id=model_id,
                snapshot_date=self.snapshot_date,
                features={name: column[i] for name, column in zip(names, values, strict=True)},
                downloads=self.downloads[i],
                downloads_all_time=self.downloads_all_time[i],
                likes=self.likes[i],
                trending_rank=self.trending_rank[i],
                pipeline_tag=self.pipeline_tag[i],
                library_name=self.library_name[i],
                author=self.author[i],
                tags=self.tags[i],
                created_at=self.created_at[i],
                last_modified=self.last_modified[i],
                renamed_from=self.renamed_from.get(model_id),
                day_models=self.day_models,
            )
            for i, model_id in enumerate(self.model_id)
        ]

    @classmethod
    def of(cls, rows: Sequence[ModelFeatures], **extra: Any) -> Self:
        """The message carrying `rows` (one day's `hub.features.v1` events, one per model); features missing from
        a row are null. For tests and adapters: the features close encodes its frame directly."""
        days = {r.snapshot_date for r in rows}
        if len(days) != 1:
            raise ValueError(f"a batch carries one day's rows, not {len(days)} days'")
        names = list(dict.fromkeys(name for r in rows for name in r.features))
        return cls(
            snapshot_date=days.pop(),
            day_models=rows[0].day_models,
            model_id=[r.model_id for r in rows],
            downloads=[r.downloads for r in rows],
            downloads_all_time=[r.downloads_all_time for r in rows],
            likes=[r.likes for r in rows],
            trending_rank=[r.trending_rank for r in rows],
            pipeline_tag=[r.pipeline_tag for r in rows],
            library_name=[r.library_name for r in rows],
            author=[r.author for r in rows],
            tags=[list(r.tags) for r in rows],
            created_at=[r.created_at for r in rows],
            last_modified=[r.last_modified for r in rows],
            renamed_from={r.model_id: r.renamed_from for r in rows if r.renamed_from},
            features=cls._features_field({name: [r.features.get(name) for r in rows] for name in names}, len(rows)),
            **extra,
        )


# The facts of the two columnar features events' documented examples (each adds its `features`).
_FEATURES_EXAMPLE: dict[str, Any] = {
    "schema_version": 1,
    "occurred_at": "2026-12-03T04:31:55.004Z",
    "snapshot_date": "2026-12-03",
    "day_models": 1843207,
    "model_id": ["Qwen/Qwen3-0.6B", "acme/tiny-bert"],
    "downloads": [8214530, 12],
    "downloads_all_time": [41268877, None],
    "likes": [812, 0],
    "trending_rank": [7, None],
    "pipeline_tag": ["text-generation", "fill-mask"],
    "library_name": ["transformers", None],
    "author": ["Qwen", "acme"],
    "tags": [["transformers", "safetensors", "qwen3", "text-generation"], []],
    "created_at": ["2025-04-27T03:40:08Z", "2026-12-01T10:00:00Z"],
    "last_modified": ["2025-07-26T03:46:27Z", None],
    "renamed_from": {"acme/tiny-bert": "acme/bert-tiny"},
}


class ModelFeaturesBatch(_FeaturesColumns):
    """The final features of many models on one day, column by column (`hub.features.v2`).

    The same facts as `hub.features.v1`, without a per-model message and the 69 feature names repeated in each:
    column `i` of every list is the `i`-th model. Natural key of each row: (model_id, snapshot_date); a row may
    arrive again (a redelivered message, a day closed again) and consumers upsert it. Kafka key:
    `<snapshot_date>/<first model_id>`. Every row of a message is a model-day whose own key
    (`<snapshot_date>/<model_id>`) the default partitioner (murmur2) puts on the same partition as the message's:
    each model-day's publications stay on one partition, in order, however a day closed again is sliced.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_FEATURES_EXAMPLE,
                    "features": {
                        "log_downloads": [15.921, 2.565],
                        "growth_rate_7d": [0.083, None],
                        "day_pct_log_downloads": [0.998, 0.112],
                    },
                }
            ]
        }
    )

    topic: ClassVar[str] = "hub.features.v2"

    features: dict[str, list[float | None]] = Field(description="feature name -> one value per row (null = missing)")

    @model_validator(mode="after")
    def _columns_line_up(self) -> ModelFeaturesBatch:
        self._check_rows([f"features.{name}" for name, values in self.features.items() if len(values) != self.rows])
        return self

    def feature_names(self) -> list[str]:
        return list(self.features)

    def feature_values(self, name: str) -> npt.NDArray[np.float64]:
        return np.array(self.features[name], dtype="float64")  # None becomes NaN

    @classmethod
    def features_of(cls, names: Sequence[str], x: npt.NDArray[np.float64]) -> Callable[[int, int], dict[str, Any]]:
        return lambda lo, hi: {name: x[j, lo:hi] for j, name in enumerate(names)}

    @classmethod
    def _features_field(cls, columns: dict[str, list[float | None]], rows: int) -> dict[str, Any]:
        return dict(columns)  # validated as they are: a list of numbers and nulls per feature


PackedDtype = Literal["<f4", "<f8"]


class PackedFloats(BaseModel):
    """One column of float values, packed: IEEE 754 little-endian binary32 (`<f4`) or binary64 (`<f8`) values, one
    per row, as base64 (RFC 4648 section 4, padded). NaN is a missing value. An encoder writes binary32 where every
    value of the column is exactly a binary32 (the features service stores the time features so), so a consumer
    reads the same float64 values either way. The message that holds the columns decodes them (`ModelFeaturesPacked`:
    a column that is not base64, or not one value per row, fails the message's validation)."""

    model_config = ConfigDict(frozen=True, json_schema_extra={"examples": [{"dtype": "<f4", "data": "AACAPwAAwH8="}]})

    dtype: PackedDtype = Field(description="numpy's name of the values' type: `<f4` binary32, `<f8` binary64")
    data: str = Field(description="The values' bytes, base64")

    @staticmethod
    def pack(values: npt.NDArray[np.floating[Any]]) -> dict[str, str]:
        """The JSON object of `values` (`<f4` or `<f8`, NaN where missing; for bulk encoders)."""
        dtype = values.dtype.str
        if dtype not in ("<f4", "<f8"):
            raise ValueError(f"packed floats are <f4 or <f8, not {dtype}")
        return {"dtype": dtype, "data": pybase64.b64encode(np.ascontiguousarray(values).data).decode("ascii")}

    @staticmethod
    def narrowest(values: npt.NDArray[np.float64]) -> PackedDtype:
        """`<f4` when every value of `values` is exactly a binary32 (NaN included), else `<f8`."""
        return "<f4" if np.array_equal(values.astype("<f4").astype("float64"), values, equal_nan=True) else "<f8"


class ModelFeaturesPacked(_FeaturesColumns):
    """The final features of many models on one day, column by column, the features packed (`hub.features.v3`).

    The same facts as `hub.features.v2`, with each feature's column as `PackedFloats` (the values' bytes, base64)
    instead of a JSON number per value: fewer bytes a row, and a consumer reads a column into an array without
    a Python float per value (docs/decisions/pipeline-redesign.md, session 23). Missing values (and non-finite ones,
    as on v2) are NaN. Rows, natural keys, the Kafka key and partitions are v2's: a model-day's publications stay on
    one partition, in order, and consumers upsert a row that arrives again.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_FEATURES_EXAMPLE,
                    "features": {
                        "log_downloads": {"dtype": "<f4", "data": "arx+QfYoJEA="},
                        "growth_rate_7d": {"dtype": "<f4", "data": "5/upPQAAwH8="},
                        "day_pct_log_downloads": {"dtype": "<f8", "data": "Vg4tsp3v7z956SYxCKy8Pw=="},
                    },
                }
            ]
        }
    )

    topic: ClassVar[str] = "hub.features.v3"

    features: dict[str, PackedFloats] = Field(description="feature name -> its column, packed (one value per row)")
    # the columns decoded, one row per feature in `features`' order (float64, NaN where missing)
    _matrix: npt.NDArray[np.float64] = PrivateAttr()

    @model_validator(mode="after")
    def _columns_line_up(self) -> ModelFeaturesPacked:
        # One decode per column into one matrix per message, with pybase64: CPython's base64 was as slow as parsing
        # the JSON numbers it replaces (docs/decisions/pipeline-redesign.md, session 23).
        matrix = np.empty((len(self.features), self.rows))
        uneven = []
        for j, (name, column) in enumerate(self.features.items()):
            try:
                raw = pybase64.b64decode(column.data, validate=True)
            except binascii.Error as exc:
                raise ValueError(f"features.{name}: data is not base64 ({exc})") from None
            size = np.dtype(column.dtype).itemsize
            if len(raw) != size * self.rows:
                uneven.append(f"features.{name}")
                continue
            matrix[j] = np.frombuffer(raw, dtype=column.dtype)
        self._check_rows(uneven)
        self._matrix = matrix
        return self

    def feature_names(self) -> list[str]:
        return list(self.features)

    def feature_values(self, name: str) -> npt.NDArray[np.float64]:
        values: npt.NDArray[np.float64] = self.feature_matrix()[list(self.features).index(name)]
        return values

    def feature_matrix(self) -> npt.NDArray[np.float64]:
        view = self._matrix.view()
        view.flags.writeable = False
        return view

    @classmethod
    def features_of(cls, names: Sequence[str], x: npt.NDArray[np.float64]) -> Callable[[int, int], dict[str, Any]]:
        """Packed: infinities NaN (as v2's JSON nulls them), each feature in binary32 where all of its values in `x`
        are exactly binary32."""
        finite = np.where(np.isfinite(x), x, np.nan)
        columns = [column.astype(PackedFloats.narrowest(column)) for column in finite]
        return lambda lo, hi: {name: PackedFloats.pack(columns[j][lo:hi]) for j, name in enumerate(names)}


# the columns both columnar events carry (_ModelColumns' own fields)
_FACT_COLUMNS: tuple[str, ...] = tuple(
    name for name in _ModelColumns.model_fields if name not in {*Event.model_fields, "model_id", "renamed_from"}
)
# the per-row columns of ModelSnapshotBatch besides model_id (bulk readers and writers go through each of them)
SNAPSHOT_ROW_COLUMNS: tuple[str, ...] = ("downloads", "downloads_all_time", "likes", "trending_score", "trending_rank")
SNAPSHOT_ROW_COLUMNS += _FACT_COLUMNS
# the per-row columns of ModelFeaturesBatch besides model_id and features (bulk consumers read each of them)
BATCH_ROW_COLUMNS: tuple[str, ...] = ("downloads", "downloads_all_time", "likes", "trending_rank", *_FACT_COLUMNS)


class Contribution(BaseModel):
    """One feature's signed push on a score (XGBoost's own contribution, in log-odds)."""

    model_config = ConfigDict(frozen=True)

    feature: str
    value: float | None
    contribution: float


# A pick's explanation in the scores' documented examples.
_TOP_FEATURES_EXAMPLE: list[JsonValue] = [
    {"feature": "day_pct_log_downloads", "value": 0.998, "contribution": 2.29},
    {"feature": "rank_change_7d", "value": -4.0, "contribution": 0.71},
]


class ModelScore(Event):
    """Trend probability of one model on one day by one model version.

    Natural key: (model_id, snapshot_date, model_version).
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "schema_version": 1,
                    "occurred_at": "2026-12-03T04:33:10.871Z",
                    "model_id": "Qwen/Qwen3-0.6B",
                    "snapshot_date": "2026-12-03",
                    "model_version": "trending-20261201-3f9c2a",
                    "label": "trending",
                    "horizon_days": 7,
                    "probability": 0.62,
                    "threshold": 0.382,
                    "top_features": _TOP_FEATURES_EXAMPLE,
                }
            ]
        }
    )

    topic: ClassVar[str] = "hub.scores.v1"

    model_id: str
    snapshot_date: date
    model_version: str
    label: str = Field(description="What the probability is of: 'trending' or 'surge'")
    horizon_days: int
    probability: float = Field(ge=0.0, le=1.0)
    threshold: float = Field(ge=0.0, le=1.0, description="Operating threshold of this model version")
    top_features: list[Contribution] = Field(
        default_factory=list,
        description="The features that pushed the score most, largest first: filled for a pick (probability >= "
        "threshold); empty for other scores, whose explanation hubpulse computes when it is read "
        "(GET /v1/models/{model_id})",
    )


# Rows per hub.scores.v2 message (111 bytes a score on average where 18 % are picks with five contributions:
# docs/decisions/pipeline-redesign.md, session 30) and at most this many bytes, under Kafka's default 1 MiB
# message limit: a message of long explanations is halved until it fits.
SCORES_BATCH_ROWS = 1000
SCORES_BATCH_BYTES = 1_000_000
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class ModelScoresBatch(_Rows):
    """Trend probabilities of many models on one day by one model version, column by column (`hub.scores.v2`).

    The same scores as `hub.scores.v1`, without a message per model: row `i` is `model_id[i]`, `probability[i]`
    and `top_features[i]`; the version, label, horizon and threshold are the message's. Natural key of each row:
    (model_id, snapshot_date, model_version); a row may arrive again (a redelivered message, a day scored again)
    and consumers upsert it.

    Kafka key: the first row's `model_id`. Every row of a message is a model that the default partitioner (murmur2
    of the model id, v1's key) puts on the same partition as that key: each model's scores stay on one partition,
    in order, as on v1. At most SCORES_BATCH_ROWS rows and SCORES_BATCH_BYTES bytes a message.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "schema_version": 1,
                    "occurred_at": "2026-12-03T04:33:10.871Z",
                    "snapshot_date": "2026-12-03",
                    "model_version": "trending-20261201-3f9c2a",
                    "label": "trending",
                    "horizon_days": 7,
                    "threshold": 0.382,
                    "model_id": ["Qwen/Qwen3-0.6B", "acme/tiny-bert"],
                    "probability": [0.62, 0.013],
                    "top_features": [_TOP_FEATURES_EXAMPLE, []],
                }
            ]
        }
    )

    topic: ClassVar[str] = "hub.scores.v2"

    snapshot_date: date
    model_version: str
    label: str = Field(description="What the probabilities are of: 'trending' or 'surge'")
    horizon_days: int
    threshold: float = Field(ge=0.0, le=1.0, description="Operating threshold of this model version")
    model_id: list[str] = Field(min_length=1)
    probability: list[Probability]
    top_features: list[list[Contribution]] = Field(
        description="Each row's features that pushed its score most, largest first: filled for a pick (probability "
        ">= threshold); empty for other scores, whose explanation hubpulse computes when it is read "
        "(GET /v1/models/{model_id})",
    )

    @model_validator(mode="after")
    def _columns_line_up(self) -> ModelScoresBatch:
        self._check_columns(("probability", "top_features"))
        return self

    def as_v1(self) -> list[ModelScore]:
        """Each row as the `hub.scores.v1` event it stands for (for consumers that judge one score at a time)."""
        # validated as this message was: each row's values are already checked
        return [
            ModelScore.model_construct(
                occurred_at=self.occurred_at,
                model_id=model_id,
                snapshot_date=self.snapshot_date,
                model_version=self.model_version,
                label=self.label,
                horizon_days=self.horizon_days,
                probability=probability,
                threshold=self.threshold,
                top_features=top,
            )
            for model_id, probability, top in zip(self.model_id, self.probability, self.top_features, strict=True)
        ]


class DeploymentStatus(StrEnum):
    PENDING = "pending"
    PROVISIONING = "provisioning"
    RUNNING = "running"
    FAILED = "failed"
    STOPPED = "stopped"
    DELETED = "deleted"


class DeploymentEvent(Event):
    """A deployment changed state. Key: deployment_id. Natural key: (deployment_id, sequence)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "schema_version": 1,
                    "occurred_at": "2026-12-03T09:15:02.118Z",
                    "deployment_id": "dep_7f3a9c21e4b0",
                    "sequence": 3,
                    "model_id": "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
                    "revision": "714eb0fa89d2f80546fda750413ed43d93601a13",
                    "target": "local",
                    "status": "running",
                    "previous_status": "provisioning",
                    "reason": None,
                    "version": 1,
                    "user_id": "usr_51c2d0e8",
                    "org_id": "org_a41b77f0",
                }
            ]
        }
    )

    topic: ClassVar[str] = "deploy.events.v1"
    key_field: ClassVar[str] = "deployment_id"

    deployment_id: str
    sequence: int = Field(ge=0, description="Monotonic per deployment; consumers drop what they have seen")
    model_id: str
    revision: str | None = None
    target: Literal["local", "hf-space", "aws-lambda", "kubernetes"]
    status: DeploymentStatus
    previous_status: DeploymentStatus | None = None
    reason: str | None = None
    version: int = Field(ge=1, description="Deployment version (config revision) this transition belongs to")
    user_id: str | None = None
    org_id: str | None = None


class InferenceEvent(Event):
    """One predict call through the gateway. Key: deployment_id. Natural key: request_id."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "schema_version": 1,
                    "occurred_at": "2026-12-03T09:16:44.390Z",
                    "request_id": "4be1c3f0a9d24c8e9f0b6a7d2e13c5aa",
                    "deployment_id": "dep_7f3a9c21e4b0",
                    "model_id": "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
                    "user_id": "usr_51c2d0e8",
                    "org_id": "org_a41b77f0",
                    "status": "ok",
                    "http_status": 200,
                    "latency_ms": 6.4,
                    "inputs": 1,
                    "request_bytes": 41,
                    "response_bytes": 58,
                    "error": None,
                }
            ]
        }
    )

    topic: ClassVar[str] = "inference.events.v1"
    key_field: ClassVar[str] = "deployment_id"

    request_id: str = Field(default_factory=new_event_id)
    deployment_id: str
    model_id: str
    user_id: str | None = None
    org_id: str | None = None
    status: Literal["ok", "error"]
    http_status: int
    latency_ms: float = Field(ge=0)
    inputs: int = Field(ge=0, description="Number of inputs in the call (1, or the batch size)")
    request_bytes: int = Field(ge=0)
    response_bytes: int = Field(ge=0)
    error: str | None = None


class AlertEvent(Event):
    """An alert rule started or stopped firing for a deployment. Key: deployment_id."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "schema_version": 1,
                    "occurred_at": "2026-12-03T09:20:00.000Z",
                    "alert_id": "alr_0c9e5d1f",
                    "rule": "p95 latency above 500 ms for 5 minutes",
                    "deployment_id": "dep_7f3a9c21e4b0",
                    "metric": "p95_latency_ms",
                    "state": "firing",
                    "value": 812.5,
                    "threshold": 500.0,
                    "window_s": 300,
                }
            ]
        }
    )

    topic: ClassVar[str] = "alerts.v1"
    key_field: ClassVar[str] = "deployment_id"

    alert_id: str
    rule: str
    deployment_id: str
    metric: str = Field(description="What the rule watches: 'error_rate' or 'p95_latency_ms'")
    state: Literal["firing", "resolved"]
    value: float
    threshold: float
    window_s: int


class WatchAlertEvent(Event):
    """A user's watch fired on a model (trend crossing, new pick, surge, new model). Key: user_id.

    Natural key: alert_id (one per watch, model, condition and crossing; a replayed score never makes another).
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "schema_version": 1,
                    "occurred_at": "2026-12-03T04:33:12.204Z",
                    "alert_id": "wal_5f0b8e2c9a41d7e3",
                    "watch_id": "wat_1c7e9a03b2d4",
                    "user_id": "usr_8d2f1a",
                    "org_id": "org_acme",
                    "model_id": "Qwen/Qwen3-0.6B",
                    "condition": "threshold",
                    "crossing_id": "2026-12-03",
                    "probability": 0.62,
                    "previous_probability": 0.31,
                    "threshold": 0.45,
                    "reason": "Its trend probability crossed your threshold. Downloads over 30 days are higher "
                    "than 99.8 % of models today. Up 4 places on the trending list in a week.",
                    "url": "https://hubpulse.example.com/models/Qwen/Qwen3-0.6B",
                }
            ]
        }
    )

    topic: ClassVar[str] = "watch.alerts.v1"
    key_field: ClassVar[str] = "user_id"

    alert_id: str
    watch_id: str
    user_id: str
    org_id: str
    model_id: str
    condition: Literal["threshold", "picks", "surge", "new_model", "test"]
    crossing_id: str = Field(
        description="What makes this crossing distinct: the score's day, or 'first' for a new model"
    )
    probability: float | None = Field(default=None, ge=0.0, le=1.0)
    previous_probability: float | None = Field(default=None, ge=0.0, le=1.0)
    threshold: float | None = None
    reason: str = Field(description="Why, in words (from the score's top features)")
    url: str = Field(description="The model's page on the web app")


ALL_EVENTS: tuple[type[Event], ...] = (
    ModelSnapshot,
    ModelSnapshotBatch,
    DayIngested,
    ModelFeatures,
    ModelFeaturesBatch,
    ModelFeaturesPacked,
    ModelScore,
    ModelScoresBatch,
    DeploymentEvent,
    InferenceEvent,
    AlertEvent,
    WatchAlertEvent,
)

ALL_TOPICS: tuple[str, ...] = tuple(e.topic for e in ALL_EVENTS)


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


def event_schema(event: type[Event]) -> dict[str, Any]:
    return event.model_json_schema(mode="serialization")
