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
        _count(InferenceEvent.topic, len(events), new)

    return handle


def deployment_handler(db: AsyncDatabase[dict[str, Any]]) -> Handler[DeploymentEvent]:
    async def handle(batch: Sequence[Received[DeploymentEvent]]) -> None:
        events = [r.event for r in batch]
        _count(DeploymentEvent.topic, len(events), await repository.store_deployment_events(db, events))

    return handle
