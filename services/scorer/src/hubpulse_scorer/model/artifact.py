"""The trained model as one self-describing artifact: booster + calibration + metadata, to bytes and back.

Format (format_version 1): a zip holding `model.ubj` (XGBoost's UBJSON model) and `metadata.json`
(ModelMetadata). The registry stores these bytes as they are; the scorer loads them with from_bytes.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from hubpulse_common.errors import InputError
from hubpulse_scorer.model.explain import Contribution, top_contributions

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelMetadata:
    version: str
    label: dict[str, Any]  # the LabelConfig fields
    feature_columns: list[str]
    # [first day, last day] of the rows of the first booster, whose validation margins set the calibration; the
    # booster refitted on every training row (averaged into the model) covers extra["refit_window"]
    training_window: list[str]
    validation_window: list[str]  # [first day, last day] of the calibration / threshold slice
    data_hash: str
    threshold: float
    platt: list[float]  # calibrated p = sigmoid(a * margin + b)
    params: dict[str, Any]
    created_at: str
    backtest: dict[str, Any] | None = None
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainedModel:
    booster: xgb.Booster
    metadata: ModelMetadata

    @property
    def feature_columns(self) -> list[str]:
        return self.metadata.feature_columns

    @property
    def threshold(self) -> float:
        return self.metadata.threshold

    def _matrix(self, features: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.feature_columns if c not in features.columns]
        if missing:
            raise InputError(f"feature rows lack the model's columns: {', '.join(missing)}")
        return features[self.feature_columns].to_numpy(dtype="float32", na_value=np.nan)

    def margin(self, features: pd.DataFrame) -> np.ndarray:
        """Raw (uncalibrated) log-odds of the booster, predicted from the matrix in place: the same values as a
        DMatrix's prediction, without copying the batch into one first (about 30 % less CPU for this step at the
        model's 150 shallow trees: docs/decisions/pipeline-redesign.md, session 30)."""
        margin = self.booster.inplace_predict(self._matrix(features), missing=np.nan, predict_type="margin")
        return np.asarray(margin, dtype="float64")

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of the label for each row of `features` (needs FEATURE_COLUMNS)."""
        a, b = self.metadata.platt
        proba: np.ndarray = 1.0 / (1.0 + np.exp(-(a * self.margin(features) + b)))
        return proba

    def explain(self, features: pd.DataFrame, top_n: int = 5) -> list[list[Contribution]]:
        """Top `top_n` signed feature contributions per row (see explain.top_contributions)."""
        explained: list[list[Contribution]] = top_contributions(
            self.booster, self._matrix(features), self.feature_columns, top_n
        )
        return explained

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("model.ubj", bytes(self.booster.save_raw("ubj")))
            zf.writestr("metadata.json", json.dumps(asdict(self.metadata), indent=2, sort_keys=True))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainedModel:
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                meta = json.loads(zf.read("metadata.json"))
                raw = zf.read("model.ubj")
        except (zipfile.BadZipFile, KeyError, ValueError) as exc:
            raise InputError(f"not a hubpulse model artifact ({exc})") from exc
        if meta.get("format_version") != FORMAT_VERSION:
            raise InputError(
                f"model artifact format {meta.get('format_version')!r} is not supported (expected {FORMAT_VERSION})"
            )
        booster = xgb.Booster()
        booster.load_model(bytearray(raw))
        return cls(booster=booster, metadata=ModelMetadata(**meta))
