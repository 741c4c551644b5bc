"""Alert rules, evaluated periodically: a transition is recorded, published on `alerts.v1` and sent to a webhook."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from prometheus_client import Counter, Gauge
from pymongo.asynchronous.database import AsyncDatabase
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from hubpulse_common.events import AlertEvent
from hubpulse_common.kafka import EventBus
from hubpulse_common.logging import get_logger
from hubpulse_metrics import repository
from hubpulse_metrics.repository import Filters
from hubpulse_metrics.schemas import Alert
from hubpulse_metrics.service import evaluate_rule
from hubpulse_metrics.settings import MetricsSettings

log = get_logger(__name__)

ALERTS = Counter("hubpulse_metrics_alert_transitions_total", "Alert rule transitions", ["rule", "state"])
FIRING = Gauge("hubpulse_metrics_alerts_firing", "Deployments an alert rule fires for", ["rule"])
WEBHOOK_FAILURES = Counter("hubpulse_metrics_alert_webhook_failures_total", "Webhook deliveries given up")


class _RetryableStatus(Exception):
    pass


async def send_webhook(client: httpx.AsyncClient, url: str, alert: Alert, attempts: int) -> bool:
    """POST the alert; retry connection errors and 5xx/429 with backoff. True when the receiver took it."""
    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=0.2, max=5.0),
            retry=retry_if_exception_type((httpx.TransportError, _RetryableStatus)),
            reraise=True,
        ):
            with attempt:
                response = await client.post(url, json=alert.model_dump(mode="json"))
                if response.status_code >= 500 or response.status_code == 429:
                    raise _RetryableStatus(f"HTTP {response.status_code}")
                response.raise_for_status()
    except (httpx.HTTPError, _RetryableStatus) as exc:
        WEBHOOK_FAILURES.inc()
        log.error("metrics.alert_webhook_failed", url=url, alert_id=alert.alert_id, error=str(exc)[:300])
        return False
    return True


async def evaluate_once(
    db: AsyncDatabase[dict[str, Any]], bus: EventBus, client: httpx.AsyncClient, settings: MetricsSettings
) -> list[Alert]:
    now = datetime.now(UTC)
    raised = []
    for rule in settings.alert_rules:
        since = now - timedelta(seconds=rule.window_s)
        window_calls = await repository.calls(db, Filters(deployment_id=rule.deployment_id), since, now)
        state = await repository.firing(db, rule.name)
        for transition in evaluate_rule(rule, window_calls, state):
            alert = repository.alert_of(transition, now)
            # Sent before it is recorded: if the publish fails, the state is unchanged and the next round
            # raises the same transition again (recorded first, it would never be sent). A crash in between
            # sends it twice (same alert id and state): a repeat, never a loss.
            await bus.publish(AlertEvent(**alert.model_dump(exclude={"changed_at"}), occurred_at=now))
            if settings.alert_webhook_url:
                await send_webhook(client, settings.alert_webhook_url, alert, settings.alert_webhook_attempts)
            await repository.record_alert(db, alert)
            state[transition.deployment_id] = alert.state == "firing"
            ALERTS.labels(rule.name, alert.state).inc()
            log.warning("metrics.alert", **alert.model_dump(mode="json"))
            raised.append(alert)
        FIRING.labels(rule.name).set(sum(state.values()))
    return raised


async def run_alerts(db: AsyncDatabase[dict[str, Any]], bus: EventBus, settings: MetricsSettings) -> None:
    """Background task of the lifespan: evaluate every rule every `alert_interval_s`, forever."""
    async with httpx.AsyncClient(timeout=settings.alert_webhook_timeout_s) as client:
        while True:
            try:
                await evaluate_once(db, bus, client, settings)
            except Exception:
                # One bad round (store hiccup) must not end alerting for the life of the process.
                log.exception("metrics.alert_round_failed")
            await asyncio.sleep(settings.alert_interval_s)
