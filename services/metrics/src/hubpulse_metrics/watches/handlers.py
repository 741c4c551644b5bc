"""Kafka handlers of watches: model facts from `hub.features.v3`; every `hub.scores.v2` score judged against the
watches that cover its model, each firing stored once (a replayed score finds its alert already there)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from prometheus_client import Counter
from pymongo.asynchronous.database import AsyncDatabase

from hubpulse_common.events import ModelFeaturesPacked, ModelScore, ModelScoresBatch
from hubpulse_common.kafka import Handler, Received
from hubpulse_common.logging import get_logger
from hubpulse_metrics.settings import MetricsSettings
from hubpulse_metrics.watches import repository, service

log = get_logger(__name__)

FIRED = Counter("hubpulse_watch_alerts_total", "Watch alerts stored, by condition", ["condition"])
REPLAYED = Counter("hubpulse_watch_alerts_replayed_total", "Firings dropped because their crossing already alerted")


def features_handler(db: AsyncDatabase[dict[str, Any]]) -> Handler[ModelFeaturesPacked]:
    async def handle(batch: Sequence[Received[ModelFeaturesPacked]]) -> None:
        batches = [r.event for r in batch]
        await repository.follow_renames(db, batches)
        await repository.store_facts(db, batches)

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


# Scores judged at a time: each look-up of a chunk is one query (every model id in one `$in`), which must stay
# well within a MongoDB document; a consumed batch of hub.scores.v2 holds up to 1,000 scores a message.
JUDGE_CHUNK = 2000


async def judge(db: AsyncDatabase[dict[str, Any]], settings: MetricsSettings, scores: Sequence[ModelScore]) -> int:
    """An alert for each watch condition a batch's scores set off, then the scores stored, JUDGE_CHUNK scores at a
    time, in order. Returns how many alerts are new. Each look-up is one query for the whole chunk (facts,
    watches, previous scores, downloads, alerts): measured in docs/decisions/metrics.md. Each score is compared
    with the latest score before its own day, stored or in the chunk (an earlier chunk's are stored by then), so a
    redelivered batch reaches the same verdicts."""
    new = 0
    for start in range(0, len(scores), JUDGE_CHUNK):
        chunk = scores[start : start + JUDGE_CHUNK]
        new += await _alerts(db, settings, chunk)
        await repository.store_scores(db, chunk)
    return new


async def _alerts(db: AsyncDatabase[dict[str, Any]], settings: MetricsSettings, scores: Sequence[ModelScore]) -> int:
    facts = await repository.facts_of(db, sorted({s.model_id for s in scores}))
    candidates = await repository.candidate_watches_of(db, list(facts.values()))
    watches = {model_id: _matching(candidates, model_facts) for model_id, model_facts in facts.items()}
    watched = [s for s in scores if watches[s.model_id]]
    if not watched:
        return 0
    before = await repository.previous_scores(db, watched)
    downloads = await repository.downloads_of(
        db, [(s.model_id, s.snapshot_date - timedelta(days=n)) for s in watched for n in _DOWNLOAD_DAYS]
    )
    alerts = []
    for score in watched:
        previous = before.get(repository.score_id(score))
        reading = _reading(score, previous, facts[score.model_id], downloads)
        for watch in watches[score.model_id]:
            for firing in service.fired(watch["conditions"], watch["threshold"], reading):
                alerts.append(alert_doc(watch, firing, reading, score.model_id, settings, score.occurred_at))
    new = await repository.insert_alerts(db, alerts)
    for doc in new:
        FIRED.labels(doc["condition"]).inc()
    REPLAYED.inc(len(alerts) - len(new))
    return len(new)


# the days (before a score's) whose downloads the surge conditions compare
_DOWNLOAD_DAYS = (0, 1, service.SURGE_DAYS, service.SURGE_DAYS + 1)


def _matching(candidates: Sequence[dict[str, Any]], facts: service.ModelFacts) -> list[dict[str, Any]]:
    out = []
    for watch in candidates:
        try:
            if service.watch_matches(watch["kind"], watch["target"], facts):
                out.append(watch)
        except ValueError:
            log.warning("watch.bad_search", watch_id=watch["_id"])  # validated on save; an old one is skipped
    return out


def _reading(
    score: ModelScore,
    before: dict[str, Any] | None,
    facts: service.ModelFacts,
    downloads: dict[tuple[str, date], int],
) -> service.Reading:
    day = score.snapshot_date

    def on(n: int) -> int | None:
        return downloads.get((score.model_id, day - timedelta(days=n)))

    return service.Reading(
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


def scores_handler(
    db: AsyncDatabase[dict[str, Any]], settings: MetricsSettings, wake: asyncio.Event
) -> Handler[ModelScoresBatch]:
    async def handle(batch: Sequence[Received[ModelScoresBatch]]) -> None:
        if await judge(db, settings, [score for r in batch for score in r.event.as_v1()]):
            wake.set()

    return handle
