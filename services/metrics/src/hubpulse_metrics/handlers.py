"""Kafka handlers: thin, they hand each batch to the repository and count what happened."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Histogram
from pymongo.asynchronous.database import AsyncDatabase

from hubpulse_common.events import DeploymentEvent, InferenceEvent
from hubpulse_common.kafka import Handler, Received
from hubpulse_metrics import repository

STORED = Counter("hubpulse_metrics_events_stored_total", "Events stored for the first time", ["topic"])
DUPLICATES = Counter("hubpulse_metrics_events_duplicate_total", "Redelivered events dropped", ["topic"])
INGEST_LAG = Histogram(
    "hubpulse_metrics_ingest_lag_seconds",
    "From the event's occurred_at to it being stored and queryable",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
# Per deployment (bounded by the number of deployments): what the gateway's predict route cannot label.
PREDICTS = Counter("hubpulse_inference_requests_total", "Predict calls by deployment", ["deployment_id", "status"])
PREDICT_LATENCY = Histogram(
    "hubpulse_inference_latency_seconds",
    "Predict latency seen by the gateway, by deployment",
    ["deployment_id"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
INPUTS = Counter("hubpulse_inference_inputs_total", "Inputs predicted (a batch counts its size)", ["deployment_id"])


def _count(topic: str, received: int, new: int) -> None:
    STORED.labels(topic).inc(new)
    DUPLICATES.labels(topic).inc(received - new)


def inference_handler(db: AsyncDatabase[dict[str, Any]]) -> Handler[InferenceEvent]:
    async def handle(batch: Sequence[Received[InferenceEvent]]) -> None:
        events = [r.event for r in batch]
        new = await repository.store_inference(db, events)
        now = datetime.now(UTC)
        for event in events:
            INGEST_LAG.observe(max(0.0, (now - event.occurred_at).total_seconds()))
            # a redelivered event counts twice here (rare: at-least-once after a crash); the store deduplicates
            PREDICTS.labels(event.deployment_id, event.status).inc()
            PREDICT_LATENCY.labels(event.deployment_id).observe(event.latency_ms / 1000)
            INPUTS.labels(event.deployment_id).inc(event.inputs)
        _count(InferenceEvent.topic, len(events), new)

    return handle


def deployment_handler(db: AsyncDatabase[dict[str, Any]]) -> Handler[DeploymentEvent]:
    async def handle(batch: Sequence[Received[DeploymentEvent]]) -> None:
        events = [r.event for r in batch]
        _count(DeploymentEvent.topic, len(events), await repository.store_deployment_events(db, events))

    return handle
