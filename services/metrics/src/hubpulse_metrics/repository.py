"""MongoDB I/O of the metrics service: raw events (time series), per-minute roll-ups, deployments, alerts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, OperationFailure

from hubpulse_common.errors import ConfigError
from hubpulse_common.events import DeploymentEvent, InferenceEvent
from hubpulse_common.logging import get_logger
from hubpulse_metrics.schemas import Alert, DeploymentState, ResourceSample, UsageGroup, UsageRow
from hubpulse_metrics.service import Call, Transition, minute_of

log = get_logger(__name__)

Doc = dict[str, Any]
DUPLICATE_KEY = 11000

RAW = "inference_events"
MINUTES = "inference_minutes"
DEPLOY_EVENTS = "deployment_events"
DEPLOYMENTS = "deployments"
RESOURCES = "resource_samples"
ALERTS = "alerts"


@dataclass(frozen=True, slots=True)
class Filters:
    deployment_id: str | None = None
    user_id: str | None = None
    org_id: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("user_id", self.user_id), ("org_id", self.org_id)) if v is not None}


async def _ensure_time_series(
    db: AsyncDatabase[Doc], name: str, meta: str, retention: timedelta, unique: Sequence[str] | None
) -> Literal["timeseries", "collection"]:
    """A time-series collection, or a plain one with a TTL index where the server cannot dedupe time series.

    MongoDB refuses unique indexes on time-series collections (SecantusDB accepts them); at-least-once
    delivery needs one, so on such a server an empty time-series collection is replaced by a plain one.
    """
    existing = {c["name"]: c async for c in await db.list_collections()}
    if name not in existing:
        try:
            await db.create_collection(
                name,
                timeseries={"timeField": "ts", "metaField": meta, "granularity": "seconds"},
                expireAfterSeconds=int(retention.total_seconds()),
            )
        except OperationFailure as exc:
            log.warning("metrics.timeseries_unsupported", collection=name, error=str(exc)[:200])
            await db.create_collection(name)
    options = (await _info(db, name)).get("options", {})
    kind: Literal["timeseries", "collection"] = "timeseries" if "timeseries" in options else "collection"
    if unique:
        try:
            await db[name].create_index([(f, ASCENDING) for f in unique], unique=True, name="natural_key")
        except OperationFailure as exc:
            if kind != "timeseries" or await db[name].estimated_document_count() > 0:
                raise ConfigError(f"cannot create the unique index on {name}: {exc}") from None
            log.warning("metrics.timeseries_no_unique_index_fallback", collection=name)
            await db.drop_collection(name)
            await db.create_collection(name)
            await db[name].create_index([(f, ASCENDING) for f in unique], unique=True, name="natural_key")
            kind = "collection"
    if kind == "collection":
        await db[name].create_index("ts", expireAfterSeconds=int(retention.total_seconds()), name="ttl")
    await db[name].create_index([(f"{meta}.deployment_id", ASCENDING), ("ts", ASCENDING)], name="deployment_ts")
    log.info("metrics.collection_ready", collection=name, kind=kind)
    return kind


async def _info(db: AsyncDatabase[Doc], name: str) -> Doc:
    async for info in await db.list_collections(filter={"name": name}):
        return dict(info)
    return {}


async def ensure_schema(db: AsyncDatabase[Doc], retention: timedelta) -> str:
    """Create collections and indexes (idempotent). Returns the kind of the raw event collection."""
    kind = await _ensure_time_series(db, RAW, "meta", retention, unique=["request_id"])
    await _ensure_time_series(db, RESOURCES, "meta", retention, unique=None)
    await db[MINUTES].create_index([("deployment_id", ASCENDING), ("minute", ASCENDING)], name="deployment_minute")
    await db[MINUTES].create_index([("minute", ASCENDING)], name="minute")
    await db[DEPLOY_EVENTS].create_index(
        [("deployment_id", ASCENDING), ("sequence", ASCENDING)], unique=True, name="natural_key"
    )
    return kind


async def _insert_ignoring_duplicates(collection: AsyncCollection[Doc], docs: list[Doc]) -> int:
    """Insert what is new; a redelivered event hits the unique index and is skipped. Returns how many were new."""
    if not docs:
        return 0
    try:
        result = await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != DUPLICATE_KEY]
        if others:
            raise
        inserted: int = exc.details.get("nInserted", 0)
        return inserted
    return len(result.inserted_ids)


def _raw_doc(event: InferenceEvent, now: datetime) -> Doc:
    return {
        "ts": event.occurred_at,
        "meta": {
            "deployment_id": event.deployment_id,
            "model_id": event.model_id,
            "user_id": event.user_id,
            "org_id": event.org_id,
        },
        "request_id": event.request_id,
        "ok": event.status == "ok",
        "http_status": event.http_status,
        "latency_ms": event.latency_ms,
        "inputs": event.inputs,
        "request_bytes": event.request_bytes,
        "response_bytes": event.response_bytes,
        "error": event.error,
        "stored_at": now,
    }


def _rollup_id(deployment_id: str, user_id: str | None, org_id: str | None, minute: datetime) -> str:
    return "|".join((deployment_id, user_id or "", org_id or "", minute.isoformat()))


async def store_inference(db: AsyncDatabase[Doc], events: Sequence[InferenceEvent]) -> int:
    """Store raw events (deduplicated), then rebuild the roll-ups of every minute they touch. Returns new events.

    Roll-ups are recomputed from raw rather than incremented, so a crash between the two writes is
    repaired by the redelivery instead of leaving a minute short.
    """
    now = datetime.now(UTC)
    new = await _insert_ignoring_duplicates(db[RAW], [_raw_doc(e, now) for e in events])
    touched = {_rollup_id(e.deployment_id, e.user_id, e.org_id, minute_of(e.occurred_at)) for e in events}
    start = min(minute_of(e.occurred_at) for e in events)
    end = max(minute_of(e.occurred_at) for e in events) + timedelta(minutes=1)
    pipeline: list[Doc] = [
        {
            "$match": {
                "ts": {"$gte": start, "$lt": end},
                "meta.deployment_id": {"$in": sorted({e.deployment_id for e in events})},
            }
        },
        {
            "$group": {
                "_id": {
                    "deployment_id": "$meta.deployment_id",
                    "user_id": "$meta.user_id",
                    "org_id": "$meta.org_id",
                    "minute": {"$dateTrunc": {"date": "$ts", "unit": "minute"}},
                },
                "model_id": {"$last": "$meta.model_id"},
                "requests": {"$sum": 1},
                "errors": {"$sum": {"$cond": ["$ok", 0, 1]}},
                "inputs": {"$sum": "$inputs"},
                "request_bytes": {"$sum": "$request_bytes"},
                "response_bytes": {"$sum": "$response_bytes"},
                "latency_sum_ms": {"$sum": "$latency_ms"},
                "latency_max_ms": {"$max": "$latency_ms"},
            }
        },
    ]
    updates = []
    async for group in await db[RAW].aggregate(pipeline):
        key = group.pop("_id")
        minute = key["minute"].astimezone(UTC)
        rollup_id = _rollup_id(key["deployment_id"], key.get("user_id"), key.get("org_id"), minute)
        if rollup_id in touched:
            updates.append(UpdateOne({"_id": rollup_id}, {"$set": {**key, **group, "minute": minute}}, upsert=True))
    if updates:
        await db[MINUTES].bulk_write(updates, ordered=False)
    return new


async def store_deployment_events(db: AsyncDatabase[Doc], events: Sequence[DeploymentEvent]) -> int:
    """Keep the transition log (deduplicated on deployment_id+sequence) and each deployment's latest state."""
    docs = [{**e.model_dump(mode="python"), "ts": e.occurred_at} for e in events]
    new = await _insert_ignoring_duplicates(db[DEPLOY_EVENTS], docs)
    for deployment_id in sorted({e.deployment_id for e in events}):
        latest = await db[DEPLOY_EVENTS].find_one({"deployment_id": deployment_id}, sort=[("sequence", DESCENDING)])
        if latest is not None:
            latest.pop("_id")
            await db[DEPLOYMENTS].update_one({"_id": deployment_id}, {"$set": latest}, upsert=True)
    return new


async def deployment_owner(db: AsyncDatabase[Doc], deployment_id: str) -> tuple[str | None, str | None] | None:
    """(user id, org id) of a deployment the metrics service has seen a transition of, else None."""
    doc = await db[DEPLOYMENTS].find_one({"_id": deployment_id}, {"user_id": 1, "org_id": 1})
    return None if doc is None else (doc.get("user_id"), doc.get("org_id"))


async def deployment_state(db: AsyncDatabase[Doc], deployment_id: str) -> DeploymentState | None:
    doc = await db[DEPLOYMENTS].find_one({"_id": deployment_id})
    if doc is None:
        return None
    return DeploymentState(
        status=doc["status"],
        model_id=doc["model_id"],
        target=doc["target"],
        version=doc["version"],
        sequence=doc["sequence"],
        reason=doc.get("reason"),
        changed_at=doc["ts"],
    )


def _raw_filter(filters: Filters, since: datetime, until: datetime) -> Doc:
    query: Doc = {"ts": {"$gte": since, "$lt": until}}
    for field in ("deployment_id", "user_id", "org_id"):
        value = getattr(filters, field)
        if value is not None:
            query[f"meta.{field}"] = value
    return query


async def calls(db: AsyncDatabase[Doc], filters: Filters, since: datetime, until: datetime) -> list[Call]:
    projection = {"_id": 0, "ts": 1, "meta.deployment_id": 1, "latency_ms": 1, "ok": 1, "inputs": 1}
    cursor = db[RAW].find(_raw_filter(filters, since, until), projection)
    return [
        Call(d["meta"]["deployment_id"], d["ts"], float(d["latency_ms"]), bool(d["ok"]), int(d["inputs"]))
        async for d in cursor
    ]


async def store_resources(db: AsyncDatabase[Doc], samples: Iterable[ResourceSample]) -> int:
    now = datetime.now(UTC)
    docs = [
        {
            "ts": s.at or now,
            "meta": {"deployment_id": s.deployment_id},
            "cpu_percent": s.cpu_percent,
            "memory_mb": s.memory_mb,
            "duration_ms": s.duration_ms,
        }
        for s in samples
    ]
    await db[RESOURCES].insert_many(docs)
    return len(docs)


async def resources(
    db: AsyncDatabase[Doc], deployment_id: str, since: datetime, until: datetime
) -> tuple[list[float], list[float], list[float], int]:
    """CPU percents, memory MBs and durations reported for a deployment in the range, and the sample count."""
    cpu: list[float] = []
    memory: list[float] = []
    duration: list[float] = []
    count = 0
    query = {"meta.deployment_id": deployment_id, "ts": {"$gte": since, "$lt": until}}
    async for doc in db[RESOURCES].find(query, {"_id": 0, "cpu_percent": 1, "memory_mb": 1, "duration_ms": 1}):
        count += 1
        for values, field in ((cpu, "cpu_percent"), (memory, "memory_mb"), (duration, "duration_ms")):
            if doc.get(field) is not None:
                values.append(float(doc[field]))
    return cpu, memory, duration, count


USAGE_KEYS: dict[UsageGroup, str] = {"user": "user_id", "org": "org_id", "deployment": "deployment_id"}


async def usage(
    db: AsyncDatabase[Doc], group_by: UsageGroup, filters: Filters, since: datetime, until: datetime
) -> list[UsageRow]:
    """Usage from the per-minute roll-ups (minutes that start inside the range), grouped by user, org or deployment."""
    match: Doc = {"minute": {"$gte": minute_of(since), "$lt": until}}
    for field in ("deployment_id", "user_id", "org_id"):
        value = getattr(filters, field)
        if value is not None:
            match[field] = value
    pipeline: list[Doc] = [
        {"$match": match},
        {
            "$group": {
                "_id": f"${USAGE_KEYS[group_by]}",
                "requests": {"$sum": "$requests"},
                "errors": {"$sum": "$errors"},
                "inputs": {"$sum": "$inputs"},
                "request_bytes": {"$sum": "$request_bytes"},
                "response_bytes": {"$sum": "$response_bytes"},
                "latency_sum_ms": {"$sum": "$latency_sum_ms"},
            }
        },
    ]
    rows = [
        UsageRow(
            key=g["_id"],
            requests=g["requests"],
            errors=g["errors"],
            inputs=g["inputs"],
            request_bytes=g["request_bytes"],
            response_bytes=g["response_bytes"],
            mean_latency_ms=g["latency_sum_ms"] / g["requests"] if g["requests"] else None,
        )
        async for g in await db[MINUTES].aggregate(pipeline)
    ]
    return sorted(rows, key=lambda r: (-r.requests, r.key or ""))


def _alert_id(rule: str, deployment_id: str) -> str:
    return f"{rule}|{deployment_id}"


async def firing(db: AsyncDatabase[Doc], rule: str) -> dict[str, bool]:
    return {d["deployment_id"]: d["state"] == "firing" async for d in db[ALERTS].find({"rule": rule})}


def alert_of(transition: Transition, at: datetime) -> Alert:
    return Alert(
        alert_id=_alert_id(transition.rule.name, transition.deployment_id),
        rule=transition.rule.name,
        deployment_id=transition.deployment_id,
        metric=transition.rule.metric,
        state=transition.state,
        value=transition.value,
        threshold=transition.rule.threshold,
        window_s=transition.rule.window_s,
        changed_at=at,
    )


async def record_alert(db: AsyncDatabase[Doc], alert: Alert) -> None:
    await db[ALERTS].update_one({"_id": alert.alert_id}, {"$set": alert.model_dump()}, upsert=True)


async def alerts(db: AsyncDatabase[Doc], deployment_id: str | None) -> list[Alert]:
    query = {} if deployment_id is None else {"deployment_id": deployment_id}
    return [Alert.model_validate(d) async for d in db[ALERTS].find(query, {"_id": 0}).sort("changed_at", DESCENDING)]
