"""Fixtures of the metrics tests: the metrics service as its own OS process, and a producer on the real broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hubpulse_common.kafka import EventBus
from metrics.support import MetricsProcess


@pytest.fixture
def metrics_env(kafka: Any, mongo: Any) -> dict[str, str]:
    return {"HUBPULSE_KAFKA_BOOTSTRAP": kafka.url, "HUBPULSE_MONGO_URL": mongo.url, "HUBPULSE_ENVIRONMENT": "test"}


@pytest.fixture
def start_metrics(metrics_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., MetricsProcess]]:
    started: list[MetricsProcess] = []

    def start(**extra_env: str) -> MetricsProcess:
        service = MetricsProcess({**metrics_env, **extra_env}, tmp_path / f"metrics-{len(started)}.log")
        service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture(scope="module")
def shared_metrics(kafka: Any, mongo: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetricsProcess]:
    """One service for the tests that only read their own deployments."""
    env = {"HUBPULSE_KAFKA_BOOTSTRAP": kafka.url, "HUBPULSE_MONGO_URL": mongo.url, "HUBPULSE_ENVIRONMENT": "test"}
    service = MetricsProcess(env, tmp_path_factory.mktemp("metrics") / "metrics.log")
    service.start()
    yield service
    service.stop()


@pytest.fixture
async def bus(kafka: Any) -> AsyncIterator[EventBus]:
    producer = EventBus(kafka.url, client_id="metrics-tests")
    await producer.start()
    yield producer
    await producer.stop()
