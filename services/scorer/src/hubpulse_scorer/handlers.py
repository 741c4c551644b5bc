"""Kafka side of the scorer: the feature batch handler and the registry watcher (both thin)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Sequence
from functools import partial

import asyncpg
from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import Counter, Gauge, Info

from hubpulse_common.errors import InputError
from hubpulse_common.events import ModelFeaturesPacked, ModelScore, ModelScoresBatch
from hubpulse_common.kafka import EventBus, Received
from hubpulse_common.logging import get_logger
from hubpulse_scorer import catalog_swap, repository, service
from hubpulse_scorer.model.artifact import TrainedModel
from hubpulse_scorer.registry import ModelRegistry

log = get_logger(__name__)

SCORED = Counter("hubpulse_scorer_scored_total", "Model-days scored", ["model_version"])
MODEL = Info("hubpulse_scorer_model", "The model version the scorer serves")
MODEL_CREATED = Gauge("hubpulse_scorer_model_created_timestamp_seconds", "When the served model was trained")
RETRAIN_PERIOD = Gauge("hubpulse_scorer_model_retrain_period_seconds", "How old the served model may grow")


class ScorerWorker:
    def __init__(self, pool: asyncpg.Pool, bus: EventBus, top_n: int, *, publish_v1: bool = False) -> None:
        self._pool = pool
        self._bus = bus
        self._top_n = top_n
        self._publish_v1 = publish_v1
        self.model: TrainedModel | None = None
        self.loaded = asyncio.Event()
        self.day_activity = asyncio.Event()

    @property
    def version(self) -> str | None:
        return self.model.metadata.version if self.model is not None else None

    def use(self, model: TrainedModel) -> None:
        """Serve `model` from the next batch on (a batch in hand finishes with the version it started with)."""
        self.model = model
        MODEL.info({"version": model.metadata.version})
        MODEL_CREATED.set(dt.datetime.fromisoformat(model.metadata.created_at).timestamp())
        self.loaded.set()
        log.info("scorer.model_loaded", version=model.metadata.version)

    async def handle(self, batch: Sequence[Received[ModelFeaturesPacked]]) -> None:
        model = self.model
        assert model is not None, "the consumer starts only once a model is loaded"
        messages = [r.event for r in batch]
        marked = service.renames_of(messages)
        received = await asyncio.to_thread(service.feature_rows, messages)
        async with repository.renames_guard(self._pool, exclusive=bool(marked)):
            # a renamed model's scores and catalog rows move to its new name first (issue 14); the write below
            # is idempotent, so a crash between the two transactions redoes nothing twice
            aliases = await repository.follow_renames(self._pool, marked, received.model_id)
            rows = service.latest_per_model_day(service.under_current_names(received, aliases))
            # XGBoost releases the GIL: scoring in a thread keeps the event loop (and heartbeats) responsive.
            # explained now: the picks (ModelScore readers alert on them); the others where they are read
            scored = await asyncio.to_thread(partial(service.score, model, rows, self._top_n, picks_only=True))
            catalog, daily = await asyncio.to_thread(service.catalog_records, scored)
            await repository.write_batch(
                self._pool,
                catalog,
                daily,
                service.day_models(messages),
                feature_sets=[rows.feature_set],
            )
        partitions = await self._bus.partition_count(ModelScoresBatch.topic)
        await self._bus.publish_encoded(ModelScoresBatch.topic, service.score_messages(scored, partitions))
        if self._publish_v1:
            await self._bus.publish_encoded(ModelScore.topic, service.score_payloads(scored))
        SCORED.labels(scored.version).inc(len(rows))
        self.day_activity.set()

    async def run_swapper(self, idle_s: float, check_s: float, prepare: catalog_swap.Prepare | None = None) -> None:
        """Background task: swap in each day's catalog once it is due (woken early when a batch lands)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.day_activity.wait(), check_s)
            self.day_activity.clear()
            try:
                await catalog_swap.swap_due_days(self._pool, idle_s, prepare)
            except Exception:  # a swapper that died would leave every later day out of search
                log.exception("scorer.catalog_swap_failed")  # the day stays due: the next check retries it

    async def watch(self, registry: ModelRegistry, poll_s: float) -> None:
        """Follow the registry's current pointer: a promotion or rollback takes effect within `poll_s`."""
        seen: str | None = None
        while True:
            try:
                tag = await asyncio.to_thread(registry.current_tag)
                if tag is not None and tag != seen:
                    pointer = await asyncio.to_thread(registry.current)
                    if pointer is not None and pointer.version != self.version:
                        self.use(await asyncio.to_thread(registry.load, pointer.version))
                    seen = tag
            except (ClientError, BotoCoreError, InputError) as exc:
                log.warning("scorer.registry_poll_failed", error=str(exc))
            await asyncio.sleep(poll_s)
