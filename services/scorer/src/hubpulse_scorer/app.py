"""The scorer service's FastAPI app; its lifespan owns the stores, the registry watcher and the consumer.

Start-up order: stores, then (in the background, so /healthz answers meanwhile) the current model
(bootstrapped when the registry is empty), then the feature consumer. /readyz reports `model` until then.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from hubpulse_common.events import ModelFeaturesPacked
from hubpulse_common.http import add_readiness_probe, service_app
from hubpulse_common.kafka import BatchConsumer
from hubpulse_common.resources import background, open_resources
from hubpulse_common.supervise import report, supervise
from hubpulse_scorer import routes
from hubpulse_scorer.bootstrap import ensure_current
from hubpulse_scorer.errors import HTTP_ERRORS
from hubpulse_scorer.explanations import Explainer
from hubpulse_scorer.handlers import RETRAIN_PERIOD, ScorerWorker
from hubpulse_scorer.registry import ModelRegistry
from hubpulse_scorer.settings import ScorerSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: ScorerSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(app, settings, postgres=MIGRATIONS, kafka=True, s3=True) as res:
            bus = res.require_bus()
            RETRAIN_PERIOD.set(settings.model_retrain_period_s)
            registry = ModelRegistry(res.s3, settings.s3_bucket)
            worker = ScorerWorker(res.require_pool(), bus, settings.top_features, publish_v1=settings.scores_publish_v1)
            explainer = Explainer(res.require_pool(), registry, lambda: worker.model, settings.top_features)
            app.state.explainer = explainer
            consumer = BatchConsumer.of(settings, bus, ModelFeaturesPacked, worker.handle)

            async def model_ready() -> None:
                if not worker.loaded.is_set():
                    raise RuntimeError("no model loaded yet (bootstrapping or registry unreachable)")

            add_readiness_probe(app, "model", model_ready)

            async def follow_registry() -> None:
                # bootstrapping is idempotent (only an empty registry gets one): a restart may redo the check
                await asyncio.to_thread(
                    ensure_current,
                    registry,
                    settings.bootstrap_models,
                    settings.bootstrap_days,
                    settings.bootstrap_seed,
                )
                await worker.watch(registry, settings.model_poll_s)

            async def start_consuming() -> None:
                await worker.loaded.wait()
                await consumer.start()

            report(app, consumer.loop)
            watcher = supervise(app, "scorer:registry", follow_registry)
            starter = supervise(app, "scorer:start-consumer", start_consuming)
            swapper = supervise(
                app,
                "scorer:catalog-swap",
                lambda: worker.run_swapper(
                    settings.catalog_swap_idle_s,
                    settings.catalog_swap_check_s,
                    lambda conn, table: explainer.precompute_tops(conn, table, settings.explain_top_n),
                ),
            )
            app.state.worker = worker
            async with background(starter, watcher, swapper, then=[consumer.stop]):
                yield

    return service_app(
        settings,
        title="hubpulse scorer",
        description="Scores features with the current trend model version; explains a score on demand.",
        lifespan=lifespan,
        errors=HTTP_ERRORS,
        routers=[routes.router],
    )
