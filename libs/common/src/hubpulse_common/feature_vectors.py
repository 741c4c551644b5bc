"""A model-day's features as the catalog stores them: a vector of float64, not a JSON object.

Each detail row holds its values as `bytea` (IEEE 754 binary64, big-endian: what PostgreSQL's `float8send`
writes, so SQL can build and read them too) and the key of its `FeatureSet`, the ordered names the values
follow (the scorer's table `catalog_feature_sets`). A missing feature is NaN: JSON's `null`, as the events
carry it; non-finite values read as missing, as they did from JSON. The JSON object repeated the 69 names in
every row of every day (docs/decisions/pipeline-redesign.md, "Session 11").
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

VALUE = np.dtype(">f8")
# the names joined by a character no feature name holds; `md5(array_to_string(names, E'\x1f'))` in SQL
_SEPARATOR = "\x1f"


@dataclass(frozen=True)
class FeatureSet:
    """The ordered feature names of a vector, and the key rows refer to them by."""

    names: tuple[str, ...]
    key: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.md5(_SEPARATOR.join(self.names).encode(), usedforsecurity=False).hexdigest()
        object.__setattr__(self, "key", digest)


def encode(values: np.ndarray) -> list[bytes]:
    """Each row of a (rows x features) matrix as a vector; non-finite values become NaN (missing)."""
    matrix = np.asarray(values, dtype="float64")
    if matrix.ndim != 2:
        raise ValueError(f"a matrix of rows is needed, not {matrix.ndim} dimensions")
    clean = np.where(np.isfinite(matrix), matrix, np.nan).astype(VALUE)
    width = clean.shape[1] * VALUE.itemsize
    blob = clean.tobytes()
    return [blob[i : i + width] for i in range(0, len(blob), width)] if width else [b""] * len(clean)


def values(vector: bytes, names: Sequence[str]) -> np.ndarray:
    """A vector's values as float64 (NaN: missing), checked against the names it follows."""
    out = np.frombuffer(vector, dtype=VALUE)
    if len(out) != len(names):
        raise ValueError(f"a vector of {len(out)} values for {len(names)} feature names")
    return out.astype("float64")


def decode(vector: bytes, names: Sequence[str]) -> dict[str, float | None]:
    """The features as the event carried them: name -> value, None for missing."""
    cells = values(vector, names)
    return {name: (x if math.isfinite(x) else None) for name, x in zip(names, cells.tolist(), strict=True)}
