"""An alert whose publish fails is sent on the next round, not lost (audit L7): real MongoDB and broker."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from aiokafka.errors import KafkaTimeoutError
from pymongo import AsyncMongoClient

from hubpulse_common.events import Event
from hubpulse_common.kafka import EventBus
from hubpulse_common.settings import load_settings
from hubpulse_metrics import repository
from hubpulse_metrics.alerts import evaluate_once
from hubpulse_metrics.settings import MetricsSettings
from metrics.support import inference, new_deployment


class _FirstPublishFails(EventBus):
    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap, "test-alerts")
        self.published: list[Event] = []
        self._failed = False

    async def publish(self, event: Event, *, trace_id: str | None = None) -> None:
        if not self._failed:
            self._failed = True
            raise KafkaTimeoutError()
        await super().publish(event, trace_id=trace_id)
        self.published.append(event)


async def test_an_alert_whose_publish_failed_is_raised_again_next_round(kafka: Any, mongo: Any) -> None:
    dep = new_deployment()
    settings = load_settings(
        MetricsSettings,
        alert_rules=[
            {"name": "errors", "metric": "error_rate", "threshold": 0.2, "window_s": 60, "deployment_id": dep}
        ],
    )
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo.url)
    db = client[f"alerts_{uuid.uuid4().hex[:8]}"]
    bus = _FirstPublishFails(kafka.url)
    await bus.start()
    try:
        await repository.ensure_schema(db, timedelta(days=1))
        await repository.store_inference(
            db, [inference(dep, status="error", http_status=500) for _ in range(5)] + [inference(dep)]
        )
        async with httpx.AsyncClient() as http:
            with pytest.raises(KafkaTimeoutError):
                await evaluate_once(db, bus, http, settings)
            assert await repository.firing(db, "errors") == {}  # nothing recorded: the round failed
            raised = await evaluate_once(db, bus, http, settings)
            assert [(a.rule, a.deployment_id, a.state) for a in raised] == [("errors", dep, "firing")]
            assert [e.model_dump()["state"] for e in bus.published] == ["firing"]
            assert await repository.firing(db, "errors") == {dep: True}
            assert await evaluate_once(db, bus, http, settings) == []  # sent once, not every round
    finally:
        await bus.stop()
        await client.drop_database(db.name)
        await client.close()
