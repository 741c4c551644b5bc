"""Explanations where they are read (docs/decisions/pipeline-redesign.md, issue 21).

A batch explains only its picks (the ModelScore events' readers alert on those). The first models of each
search sort are explained when their day is swapped in (`precompute_tops`, before search shows the day), and
any other model's explanation when someone opens it (`of_model`, the scorer's GET /explanation): by the model
version that scored the row's features, the same computation as at scoring time, stored in the row so that the
next read is a plain read.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg
from prometheus_client import Counter

from hubpulse_common import feature_vectors
from hubpulse_common.errors import InputError
from hubpulse_common.logging import get_logger
from hubpulse_scorer import repository, service
from hubpulse_scorer.errors import ModelNotInCatalog, ModelNotScored, VersionNotInRegistry
from hubpulse_scorer.model.artifact import TrainedModel
from hubpulse_scorer.registry import ModelRegistry

log = get_logger(__name__)

EXPLAINED = Counter(
    "hubpulse_scorer_explained_after_scoring_total",
    "Explanations computed after scoring: on_demand (a model's detail) or top_of_sorts (at the catalog swap)",
    ["when"],
)
# Versions other than the served one kept loaded (a rollback or promotion leaves rows of the previous one).
KEEP_VERSIONS = 2


@dataclass(frozen=True)
class Explained:
    model_id: str
    snapshot_date: dt.date
    model_version: str
    explanation: str  # JSON text: a list of Contribution objects


def _features(row: asyncpg.Record) -> dict[str, float | None]:
    if row["features"] is None or row["names"] is None:  # a detail row without features explains nothing
        return {}
    return feature_vectors.decode(row["features"], row["names"])


class Explainer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: ModelRegistry,
        served: Callable[[], TrainedModel | None],
        top_features: int,
    ) -> None:
        self._pool = pool
        self._registry = registry
        self._served = served
        self._top_features = top_features
        self._loaded: OrderedDict[str, TrainedModel] = OrderedDict()

    async def _model(self, version: str) -> TrainedModel:
        served = self._served()
        if served is not None and served.metadata.version == version:
            return served
        if version in self._loaded:
            self._loaded.move_to_end(version)
            return self._loaded[version]
        try:
            model = await asyncio.to_thread(self._registry.load, version)
        except InputError as exc:
            raise VersionNotInRegistry(str(exc)) from None
        self._loaded[version] = model
        while len(self._loaded) > KEEP_VERSIONS:
            self._loaded.popitem(last=False)
        return model

    async def _explain(self, rows: Sequence[asyncpg.Record]) -> list[str]:
        """Explanations of detail rows, each by the version that scored it (one TreeSHAP call per version)."""
        out: list[str] = [""] * len(rows)
        by_version: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            by_version.setdefault(row["model_version"], []).append(i)
        for version, indexes in by_version.items():
            model = await self._model(version)
            features = [_features(rows[i]) for i in indexes]
            texts = await asyncio.to_thread(service.explain_features, model, features, self._top_features)
            for i, text in zip(indexes, texts, strict=True):
                out[i] = text
        return out

    async def of_model(self, model_id: str) -> Explained:
        """The model's explanation: the stored one, or computed now and stored."""
        row = await repository.explanation_source(self._pool, model_id)
        if row is None:
            raise ModelNotInCatalog(f"no model {model_id!r} in the catalog")
        if row["model_version"] is None and row["explanation"] is None:
            raise ModelNotScored(f"model {model_id!r} has no score yet")
        explanation = row["explanation"]
        if explanation is None:
            (explanation,) = await self._explain([row])
            await repository.cache_explanations(self._pool, [row], [explanation])
            EXPLAINED.labels("on_demand").inc()
        return Explained(row["model_id"], row["snapshot_date"], row["model_version"], explanation)

    async def precompute_tops(self, conn: asyncpg.Connection, table: str, n: int) -> int:
        """Explains the first `n` models of each search sort of `table` that have no explanation yet."""
        rows = await repository.unexplained_tops(conn, table, n)
        if rows:
            await repository.cache_explanations(conn, rows, await self._explain(rows))
            EXPLAINED.labels("top_of_sorts").inc(len(rows))
        return len(rows)
