"""The model registry: versioned trend-model artifacts in S3 and the pointer to the version in service.

Layout under the settings' bucket:
    registry/models/<version>/artifact.hpm     TrainedModel.to_bytes() (booster + calibration + metadata)
    registry/models/<version>/metadata.json    ModelMetadata (training window, data hash, features, backtest)
    registry/current.json                      {"version", "history", "updated_at"}

`history` lists the versions that were current before, oldest first, so `rollback` steps back one
promotion at a time. The scorer polls the pointer's ETag and swaps models without a restart.
Writers (the CLI, a bootstrapping scorer) are few and rare: the pointer is last-writer-wins, not a
compare-and-swap.

Calls are blocking (boto3); async callers run them in a thread.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from hubpulse_common.errors import InputError
from hubpulse_scorer.model.artifact import TrainedModel

_PREFIX = "registry/"
_MODELS = f"{_PREFIX}models/"
_CURRENT = f"{_PREFIX}current.json"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


@dataclass(frozen=True)
class Pointer:
    """Which version the scorer serves, and the versions that served before it (oldest first)."""

    version: str
    history: tuple[str, ...] = ()
    updated_at: str = field(default_factory=_now)

    def to_json(self) -> bytes:
        return json.dumps(
            {"version": self.version, "history": list(self.history), "updated_at": self.updated_at}
        ).encode()

    @classmethod
    def from_json(cls, body: bytes) -> Pointer:
        data = json.loads(body)
        return cls(version=data["version"], history=tuple(data.get("history", ())), updated_at=data["updated_at"])


@dataclass(frozen=True)
class Entry:
    """One registered version: its metadata (ModelMetadata as a dict) and when it was registered."""

    version: str
    metadata: dict[str, Any]
    registered_at: str


class ModelRegistry:
    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket

    @staticmethod
    def _key(version: str, name: str) -> str:
        return f"{_MODELS}{version}/{name}"

    def _get(self, key: str) -> bytes | None:
        try:
            body: bytes = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return body

    def _put(self, key: str, body: bytes, content_type: str) -> None:
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType=content_type)

    def register(self, model: TrainedModel) -> Entry:
        """Store a trained model as a new version (not promoted: the scorer keeps its current one)."""
        version = model.metadata.version
        if self._get(self._key(version, "metadata.json")) is not None:
            raise InputError(f"model version {version} is already registered")
        entry = Entry(version=version, metadata=asdict(model.metadata), registered_at=_now())
        # The artifact first: a metadata file always points at a complete artifact.
        self._put(self._key(version, "artifact.hpm"), model.to_bytes(), "application/zip")
        self._put(self._key(version, "metadata.json"), json.dumps(asdict(entry), indent=2).encode(), "application/json")
        return entry

    def entries(self) -> list[Entry]:
        """Every registered version, oldest first."""
        keys: list[str] = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=_MODELS):
            keys += [o["Key"] for o in page.get("Contents", ()) if o["Key"].endswith("/metadata.json")]
        entries = [Entry(**json.loads(body)) for key in keys if (body := self._get(key)) is not None]
        return sorted(entries, key=lambda e: (e.registered_at, e.version))

    def entry(self, version: str) -> Entry:
        body = self._get(self._key(version, "metadata.json"))
        if body is None:
            raise InputError(f"model version {version!r} is not registered (see `hubpulse models list`)")
        return Entry(**json.loads(body))

    def load(self, version: str) -> TrainedModel:
        body = self._get(self._key(version, "artifact.hpm"))
        if body is None:
            raise InputError(f"model version {version!r} has no artifact in the registry")
        return TrainedModel.from_bytes(body)

    def current(self) -> Pointer | None:
        body = self._get(_CURRENT)
        return Pointer.from_json(body) if body is not None else None

    def current_tag(self) -> str | None:
        """The pointer's ETag: a cheap way to notice a promotion or rollback."""
        try:
            tag: str = self._s3.head_object(Bucket=self._bucket, Key=_CURRENT)["ETag"]
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return tag

    def promote(self, version: str) -> Pointer:
        """Make `version` the one the scorer serves; the previous one is remembered for rollback."""
        self.entry(version)  # refuses unknown versions
        current = self.current()
        if current is not None and current.version == version:
            return current
        history = (*current.history, current.version) if current is not None else ()
        pointer = Pointer(version=version, history=history)
        self._put(_CURRENT, pointer.to_json(), "application/json")
        return pointer

    def rollback(self) -> Pointer:
        """Serve the previously promoted version again."""
        current = self.current()
        if current is None or not current.history:
            raise InputError("nothing to roll back to: no version was promoted before the current one")
        pointer = Pointer(version=current.history[-1], history=current.history[:-1])
        self._put(_CURRENT, pointer.to_json(), "application/json")
        return pointer
