"""The metrics service's FastAPI app; its lifespan owns the stores, the consumers and the alert loop."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial
from typing import Any

from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from hubpulse_common.asgi import HttpMiddleware
from hubpulse_common.events import DeploymentEvent, InferenceEvent, ModelFeaturesPacked, ModelScoresBatch
from hubpulse_common.http import service_app
from hubpulse_common.identity import open_token_verifier
from hubpulse_common.kafka import BatchConsumer, start_consumers, stop_consumers
from hubpulse_common.logging import get_logger
from hubpulse_common.resources import background, open_resources
from hubpulse_common.supervise import report, supervise
from hubpulse_metrics import repository
from hubpulse_metrics.alerts import run_alerts
from hubpulse_metrics.deps import METRICS_STATE, MetricsState
from hubpulse_metrics.errors import HTTP_ERRORS
from hubpulse_metrics.handlers import deployment_handler, inference_handler
from hubpulse_metrics.routes import router
from hubpulse_metrics.settings import MetricsSettings
from hubpulse_metrics.watches import handlers as watch_handlers
from hubpulse_metrics.watches import repository as watch_repository
from hubpulse_metrics.watches.delivery import Deliverer, webhook_client
from hubpulse_metrics.watches.routes import router as watches_router

log = get_logger(__name__)


class RequestLogMiddleware(HttpMiddleware):
    """One structured log line per HTTP request (the shared middleware only counts them)."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = 500
        start = time.perf_counter()

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            log.info(
                "http.request",
                method=scope.get("method"),
                path=scope.get("path"),
                query=scope.get("query_string", b"").decode("latin-1")[:500],
                status=status,
                duration_ms=round((time.perf_counter() - start) * 1000, 2),
            )


def create_app(settings: MetricsSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            open_resources(app, settings, kafka=True, mongo=True) as res,
            open_token_verifier(app, settings),
            webhook_client(settings) as http,
        ):
            db = res.require_mongo()[settings.mongo_database]
            bus = res.require_bus()
            await repository.ensure_schema(db, timedelta(days=settings.raw_retention_days))
            await watch_repository.ensure_schema(db)
            deliverer = Deliverer(db, bus, settings, http)
            METRICS_STATE.set(app, MetricsState(db, settings, deliverer))
            consume = partial(BatchConsumer.of, settings, bus, poll_timeout_ms=200)
            consumers: list[BatchConsumer[Any]] = [
                consume(InferenceEvent, inference_handler(db)),
                consume(DeploymentEvent, deployment_handler(db)),
                # A watch is about what happens from now on: a new group skips the backlog (docs/decisions/metrics.md)
                consume(ModelFeaturesPacked, watch_handlers.features_handler(db), start_at="latest"),
                consume(
                    ModelScoresBatch, watch_handlers.scores_handler(db, settings, deliverer.wake), start_at="latest"
                ),
            ]
            for consumer in consumers:
                report(app, consumer.loop)
            await start_consumers(consumers)
            alerts = supervise(app, "alerts", lambda: run_alerts(db, bus, settings))
            delivery = supervise(app, "watch-delivery", deliverer.run)
            digests = supervise(app, "watch-digests", deliverer.run_digests)
            async with background(alerts, delivery, digests, then=[partial(stop_consumers, consumers)]):
                yield

    app = service_app(
        settings,
        title="hubpulse metrics",
        description="Latency, error rate, usage analytics, alerts and live pushes.",
        lifespan=lifespan,
        errors=HTTP_ERRORS,
        routers=[router, watches_router],
    )
    app.add_middleware(RequestLogMiddleware)
    return app
