"""Kafka handlers of watches: model facts from `hub.features.v1`; every `hub.scores.v1` score judged against the
watches that cover its model, each firing stored once (a replayed score finds its alert already there)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter
from pymongo.asynchronous.database import AsyncDatabase

from hubpulse_common.events import ModelFeatures, ModelScore
from hubpulse_common.kafka import Handler, Received
from hubpulse_common.logging import get_logger
from hubpulse_metrics.settings import MetricsSettings
from hubpulse_metrics.watches import repository, service

log = get_logger(__name__)

FIRED = Counter("hubpulse_watch_alerts_total", "Watch alerts stored, by condition", ["condition"])
REPLAYED = Counter("hubpulse_watch_alerts_replayed_total", "Firings dropped because their crossing already alerted")


def features_handler(db: AsyncDatabase[dict[str, Any]]) -> Handler[ModelFeatures]:
    async def handle(batch: Sequence[Received[ModelFeatures]]) -> None:
        await repository.store_facts(db, [r.event for r in batch])

    return handle


def deliveries(channels: dict[str, Any], condition: str) -> dict[str, str]:
    """Each channel's first state: held for the digest, pending, or off (the live socket reads the feed)."""
    held = "digest" if channels.get("digest") and condition != "test" else "pending"
    return {
        "webhook": held if channels.get("webhook") else "off",
        "email": held if channels.get("email") else "off",
        "kafka": "pending",
    }


def alert_doc(
    watch: dict[str, Any],
    firing: service.Firing,
    reading: service.Reading | None,
    model_id: str,
    settings: MetricsSettings,
    score_at: datetime,
) -> dict[str, Any]:
    return {
        "_id": service.alert_id(watch["_id"], model_id, firing.condition, firing.crossing_id),
        "watch_id": watch["_id"],
        "user_id": watch["user_id"],
        "org_id": watch["org_id"],
        "scope": watch["scope"],
        "model_id": model_id,
        "condition": firing.condition,
        "crossing_id": firing.crossing_id,
        "probability": reading.probability if reading else None,
        "previous_probability": reading.previous_probability if reading else None,
        "threshold": (reading.operating_threshold if firing.condition == "picks" else watch["threshold"])
        if reading
        else watch["threshold"],
        "reason": service.reason(firing.condition, reading, reading.top_features if reading else ()),
        "url": service.model_url(settings.public_url, model_id),
        "created_at": datetime.now(UTC),
        "score_at": score_at,
        "deliveries": deliveries(watch.get("channels") or {}, firing.condition),
    }


async def judge(db: AsyncDatabase[dict[str, Any]], settings: MetricsSettings, score: ModelScore) -> int:
    """Store the score, then an alert for each watch condition it sets off. Returns how many alerts are new."""
    before = await repository.previous_score(db, score)
    await repository.store_score(db, score)
    facts = await repository.facts(db, score.model_id)
    watches = []
    for watch in await repository.candidate_watches(db, facts):
        try:
            if service.watch_matches(watch["kind"], watch["target"], facts):
                watches.append(watch)
        except ValueError:
            log.warning("watch.bad_search", watch_id=watch["_id"])  # validated on save; an old one is skipped
    if not watches:
        return 0
    day = score.snapshot_date
    downloads = await repository.downloads_on(db, score.model_id, [day - timedelta(days=n) for n in (0, 1, 7, 8)])

    def on(n: int) -> int | None:
        return downloads.get(day - timedelta(days=n))

    reading = service.Reading(
        model_id=score.model_id,
        snapshot_date=day,
        label=score.label,
        probability=score.probability,
        operating_threshold=score.threshold,
        previous_probability=before["probability"] if before else None,
        previous_operating_threshold=before["threshold"] if before else None,
        surge=service.is_surge(on(0), on(service.SURGE_DAYS)),
        surge_before=service.is_surge(on(1), on(service.SURGE_DAYS + 1)),
        new_model=service.new_model(facts, day),
        top_features=tuple(score.top_features),
    )
    new = 0
    for watch in watches:
        for firing in service.fired(watch["conditions"], watch["threshold"], reading):
            doc = alert_doc(watch, firing, reading, score.model_id, settings, score.occurred_at)
            if await repository.insert_alert(db, doc):
                FIRED.labels(firing.condition).inc()
                new += 1
            else:
                REPLAYED.inc()
    return new


def scores_handler(
    db: AsyncDatabase[dict[str, Any]], settings: MetricsSettings, wake: asyncio.Event
) -> Handler[ModelScore]:
    async def handle(batch: Sequence[Received[ModelScore]]) -> None:
        # Day order within a batch, so that each score is compared with the one before it.
        new = 0
        for received in sorted(batch, key=lambda r: r.event.snapshot_date):
            new += await judge(db, settings, received.event)
        if new:
            wake.set()

    return handle
