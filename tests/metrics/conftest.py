"""Fixtures of the metrics tests: the metrics service as its own OS process, and a producer on the real broker."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from issuer import TokenIssuer

from hubpulse_common.kafka import EventBus
from metrics.support import ALERTED, ISSUER, MetricsProcess, WebhookReceiver
from metrics.watch_support import SmtpServer


@pytest.fixture(scope="module")
def metrics_env(module_kafka: Any, mongo: Any) -> dict[str, str]:
    """A broker per module: on a shared one, a metrics service's new groups first read every event the earlier
    modules published (the kill -9 test alone publishes 3,000), and a module's timings hung on which ran first."""
    return {
        "HUBPULSE_KAFKA_BOOTSTRAP": module_kafka.url,
        "HUBPULSE_MONGO_URL": mongo.url,
        "HUBPULSE_ENVIRONMENT": "test",
        "HUBPULSE_AUTH_URL": ISSUER.url,
    }


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
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def shared_metrics(
    metrics_env: dict[str, str], webhook: WebhookReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MetricsProcess]:
    """One service for the module's tests (each uses deployments of its own); alert rules watch ALERTED."""
    rules = [
        {
            "name": "errors",
            "metric": "error_rate",
            "threshold": 0.2,
            "window_s": 60,
            "min_requests": 5,
            "deployment_id": ALERTED,
        },
        {"name": "slow", "metric": "p95_latency_ms", "threshold": 10_000, "window_s": 60, "deployment_id": ALERTED},
    ]
    env = {
        **metrics_env,
        "HUBPULSE_ALERT_RULES": json.dumps(rules),
        "HUBPULSE_ALERT_WEBHOOK_URL": webhook.url,
        "HUBPULSE_ALERT_INTERVAL_S": "0.5",
    }
    service = MetricsProcess(env, tmp_path_factory.mktemp("metrics") / "metrics.log")
    service.start()
    yield service
    service.stop()


@pytest.fixture
async def bus(module_kafka: Any) -> AsyncIterator[EventBus]:
    producer = EventBus(module_kafka.url, client_id="metrics-tests")
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture(scope="module")
def issuer() -> TokenIssuer:
    """The token issuer every metrics test's service trusts (HUBPULSE_AUTH_URL in metrics_env)."""
    return ISSUER


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    yield server
    server.close()


def watch_env(metrics_env: dict[str, str], smtp: SmtpServer) -> dict[str, str]:
    return {
        **metrics_env,
        "HUBPULSE_SMTP_HOST": "127.0.0.1",
        "HUBPULSE_SMTP_PORT": str(smtp.port),
        "HUBPULSE_WATCH_WEBHOOK_ALLOW_LOOPBACK": "true",
        "HUBPULSE_WATCH_WEBHOOK_BACKOFF_S": "0.05",
        "HUBPULSE_PUBLIC_URL": "https://hubpulse.example.com",
    }


@pytest.fixture(scope="module")
def watch_metrics(
    metrics_env: dict[str, str], smtp: SmtpServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MetricsProcess]:
    """The metrics service with watches delivering to loopback receivers and the local SMTP server."""
    service = MetricsProcess(watch_env(metrics_env, smtp), tmp_path_factory.mktemp("watch") / "metrics.log")
    service.start()
    yield service
    service.stop()
