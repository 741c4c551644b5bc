"""MongoDB I/O of watches: the watches, what is known of each model, score history, alerts and deliveries."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from hubpulse_common.events import ModelFeaturesPacked, ModelScore
from hubpulse_common.identity import Identity
from hubpulse_common.watch_schemas import Channels, Watch, WatchAlert, WatchIn, WatchPatch
from hubpulse_metrics.watches.service import ModelFacts

Doc = dict[str, Any]

WATCHES = "watches"
MODELS = "watch_models"
MODEL_DAYS = "watch_model_days"
SCORES = "watch_scores"
ALERTS = "watch_alerts"
DELIVERIES = "watch_deliveries"
COUNTERS = "watch_counters"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DUPLICATE_KEY = 11000  # MongoDB's error code


async def ensure_schema(db: AsyncDatabase[Doc]) -> None:
    await db[WATCHES].create_index([("kind", ASCENDING), ("target", ASCENDING)], name="kind_target")
    await db[WATCHES].create_index([("org_id", ASCENDING), ("user_id", ASCENDING)], name="owner")
    await db[SCORES].create_index(
        [("model_id", ASCENDING), ("label", ASCENDING), ("date", ASCENDING)], name="model_label_date"
    )
    # At least once, idempotent: one alert per watch, model, condition and crossing, however often a score comes.
    await db[ALERTS].create_index(
        [("watch_id", ASCENDING), ("model_id", ASCENDING), ("condition", ASCENDING), ("crossing_id", ASCENDING)],
        unique=True,
        name="one_per_crossing",
    )
    await db[ALERTS].create_index([("org_id", ASCENDING), ("seq", DESCENDING)], name="org_seq")
    await db[ALERTS].create_index([("pending", ASCENDING), ("lease_until", ASCENDING)], name="pending")
    await db[DELIVERIES].create_index([("alert_id", ASCENDING), ("at", ASCENDING)], name="alert_at")


def _day(d: date) -> str:
    return d.isoformat()


def _aware(value: datetime | None) -> datetime | None:
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


# ---- what is known of models (from hub.features.v3) -------------------------------------------------------


async def store_facts(db: AsyncDatabase[Doc], batches: Sequence[ModelFeaturesPacked]) -> None:
    """Latest metadata per model (first_seen kept from the earliest day) and downloads per day."""
    models, days = [], []
    for b in sorted(batches, key=lambda b: b.snapshot_date):
        day = _day(b.snapshot_date)
        for i, model_id in enumerate(b.model_id):
            latest = {
                "author": b.author[i],
                "pipeline_tag": b.pipeline_tag[i],
                "library_name": b.library_name[i],
                "tags": b.tags[i],
                "downloads": b.downloads[i],
                "likes": b.likes[i],
                "created_at": b.created_at[i],
            }
            models.append(
                UpdateOne(
                    {"_id": model_id},
                    {"$set": latest, "$min": {"first_seen": day}, "$max": {"day": day}},
                    upsert=True,
                )
            )
            if (downloads := b.downloads[i]) is not None:
                days.append(
                    UpdateOne(
                        {"_id": f"{model_id}|{day}"},
                        {"$set": {"model_id": model_id, "date": day, "downloads": downloads}},
                        upsert=True,
                    )
                )
    if models:
        await db[MODELS].bulk_write(models, ordered=True)
    if days:
        await db[MODEL_DAYS].bulk_write(days, ordered=False)


async def follow_renames(db: AsyncDatabase[Doc], batches: Sequence[ModelFeaturesPacked]) -> None:
    """Moves what is kept under a renamed model's old name to its new one: model watches, the model's facts, its
    downloads per day and its scores, so a watch keeps firing and crossings compare with the old name's history.
    Idempotent: a replayed mark finds nothing left under the old name."""
    marks = {(old, new) for b in batches for new, old in b.renamed_from.items() if old != new}
    for old, new in sorted(marks):
        await db[WATCHES].update_many({"kind": "model", "target": old}, {"$set": {"target": new}})
        await _rekey(db[MODEL_DAYS], old, new, ("date",))
        await _rekey(db[SCORES], old, new, ("label", "date"))
        if known := await db[MODELS].find_one({"_id": old}):
            first_seen, day = known.pop("first_seen", None), known.pop("day", None)
            known.pop("_id")
            update: Doc = {"$setOnInsert": known}
            if first_seen is not None:
                update["$min"] = {"first_seen": first_seen}
            if day is not None:
                update["$max"] = {"day": day}
            await db[MODELS].update_one({"_id": new}, update, upsert=True)
            await db[MODELS].delete_one({"_id": old})


async def _rekey(collection: AsyncCollection[Doc], old: str, new: str, key: tuple[str, ...]) -> None:
    """Each document of `old` written again under `new`, its `_id` being the model and `key`'s fields joined by
    `|` (a document already there wins), then the old ones removed."""
    moved = []
    async for doc in collection.find({"model_id": old}):
        moved_id = "|".join([new, *(str(doc[field]) for field in key)])
        moved.append(
            UpdateOne({"_id": moved_id}, {"$setOnInsert": {**doc, "_id": moved_id, "model_id": new}}, upsert=True)
        )
    if moved:
        await collection.bulk_write(moved, ordered=False)
        await collection.delete_many({"model_id": old})


def _facts(model_id: str, doc: Doc | None) -> ModelFacts:
    if doc is None:
        return ModelFacts(model_id=model_id)
    return ModelFacts(
        model_id=model_id,
        author=doc.get("author"),
        pipeline_tag=doc.get("pipeline_tag"),
        library_name=doc.get("library_name"),
        tags=tuple(doc.get("tags") or ()),
        downloads=doc.get("downloads"),
        likes=doc.get("likes"),
        created_at=_aware(doc.get("created_at")),
        first_seen=date.fromisoformat(doc["first_seen"]) if doc.get("first_seen") else None,
    )


async def facts_of(db: AsyncDatabase[Doc], model_ids: Sequence[str]) -> dict[str, ModelFacts]:
    """What is known of each model, in one query (a model never seen gets its bare id)."""
    found = {doc["_id"]: doc async for doc in db[MODELS].find({"_id": {"$in": list(model_ids)}})}
    return {m: _facts(m, found.get(m)) for m in model_ids}


async def downloads_of(db: AsyncDatabase[Doc], wanted: Sequence[tuple[str, date]]) -> dict[tuple[str, date], int]:
    """Downloads of many model-days in one query; a day not stored is absent."""
    cursor = db[MODEL_DAYS].find({"_id": {"$in": sorted({f"{m}|{_day(d)}" for m, d in wanted})}})
    return {(doc["model_id"], date.fromisoformat(doc["date"])): int(doc["downloads"]) async for doc in cursor}


# ---- scores ------------------------------------------------------------------------------------------------


def _score_doc(score: ModelScore) -> Doc:
    return {
        "model_id": score.model_id,
        "label": score.label,
        "date": _day(score.snapshot_date),
        "probability": score.probability,
        "threshold": score.threshold,
    }


async def store_scores(db: AsyncDatabase[Doc], scores: Sequence[ModelScore]) -> None:
    """A batch's scores by model, label and day, in one round trip (in order: a model-day twice keeps the last)."""
    if scores:
        await db[SCORES].bulk_write(
            [UpdateOne({"_id": score_id(s)}, {"$set": _score_doc(s)}, upsert=True) for s in scores], ordered=True
        )


def score_id(score: ModelScore) -> str:
    return f"{score.model_id}|{score.label}|{_day(score.snapshot_date)}"


# How far back the batched look-up of previous scores reads (daily scores: yesterday is there); a model and label
# with no score that recent is looked up alone.
RECENT_DAYS = 8


async def previous_scores(db: AsyncDatabase[Doc], scores: Sequence[ModelScore]) -> dict[str, Doc]:
    """The latest score of the model and label before each score's day (by `score_id`; replays and late days
    compare alike), stored or earlier in the same batch. One query for the batch's models over the recent days
    (per distinct earliest day: one for a day's batch); a model and label with nothing recent gets one more."""
    days: dict[tuple[str, str], list[str]] = {}
    for s in scores:
        days.setdefault((s.model_id, s.label), []).append(_day(s.snapshot_date))
    known: dict[tuple[str, str], list[Doc]] = {key: [] for key in days}
    for s in scores:  # the batch's own earlier days count as stored
        known[(s.model_id, s.label)].append(_score_doc(s))
    by_first: dict[str, list[tuple[str, str]]] = {}
    for key, d in days.items():
        by_first.setdefault(min(d), []).append(key)
    for first, keys in by_first.items():
        since = _day(date.fromisoformat(first) - timedelta(days=RECENT_DAYS))
        until = max(max(days[k]) for k in keys)
        query = {"model_id": {"$in": sorted({m for m, _ in keys})}, "date": {"$gte": since, "$lt": until}}
        async for doc in db[SCORES].find(query, {"_id": 0}):
            if (doc["model_id"], doc["label"]) in known:
                known[(doc["model_id"], doc["label"])].append(doc)
        for m, label in keys:
            if not any(d["date"] < first for d in known[(m, label)]):
                older = await db[SCORES].find_one(
                    {"model_id": m, "label": label, "date": {"$lt": since}}, sort=[("date", DESCENDING)]
                )
                if older is not None:
                    known[(m, label)].append(older)
    out: dict[str, Doc] = {}
    for s in scores:
        day = _day(s.snapshot_date)
        earlier = [d for d in known[(s.model_id, s.label)] if d["date"] < day]
        if earlier:
            out[score_id(s)] = max(earlier, key=lambda d: d["date"])
    return out


# ---- watches -----------------------------------------------------------------------------------------------


def _visible(who: Identity) -> Doc:
    """What a caller sees: their own in their organisation, and their organisation's shared ones."""
    return {"org_id": who.org_id, "$or": [{"user_id": who.user_id}, {"scope": "org"}]}


def _channels_doc(channels: Channels) -> Doc:
    return {
        "webhook": str(channels.webhook) if channels.webhook else None,
        "email": channels.email,
        "digest": channels.digest,
    }


def _watch(doc: Doc, who: Identity) -> Watch:
    values = {k: v for k, v in doc.items() if k != "_id"}
    if doc["user_id"] != who.user_id:
        values["webhook_secret"] = None  # the signing secret is the owner's
    for key in ("created_at", "updated_at"):
        values[key] = _aware(values[key])
    if values.get("webhook_disabled"):
        values["webhook_disabled"] = {**values["webhook_disabled"], "at": _aware(values["webhook_disabled"]["at"])}
    return Watch.model_validate({**values, "watch_id": doc["_id"]})


async def create_watch(db: AsyncDatabase[Doc], who: Identity, body: WatchIn) -> Watch:
    now = datetime.now(UTC)
    doc = {
        "_id": f"wat_{secrets.token_hex(8)}",
        **body.model_dump(exclude={"channels"}),
        "channels": _channels_doc(body.channels),
        "user_id": who.user_id,
        "org_id": who.org_id,
        "created_at": now,
        "updated_at": now,
        "webhook_secret": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
    }
    await db[WATCHES].insert_one(doc)
    return _watch(doc, who)


async def list_watches(db: AsyncDatabase[Doc], who: Identity) -> list[Watch]:
    cursor = db[WATCHES].find(_visible(who)).sort("created_at", DESCENDING)
    return [_watch(doc, who) async for doc in cursor]


async def get_watch_doc(db: AsyncDatabase[Doc], who: Identity, watch_id: str) -> Doc | None:
    return await db[WATCHES].find_one({"_id": watch_id, **_visible(who)})


async def get_watch(db: AsyncDatabase[Doc], who: Identity, watch_id: str) -> Watch | None:
    doc = await get_watch_doc(db, who, watch_id)
    return None if doc is None else _watch(doc, who)


async def update_watch(db: AsyncDatabase[Doc], who: Identity, watch_id: str, patch: WatchPatch) -> Watch | None:
    changes: Doc = patch.model_dump(exclude_unset=True, exclude={"channels"})
    update: Doc = {"$set": changes}
    if patch.channels is not None:
        changes["channels"] = _channels_doc(patch.channels)
        if patch.channels.webhook is not None:  # a new (or the same) endpoint: the owner has seen to it
            update["$unset"] = {"webhook_disabled": ""}
    changes["updated_at"] = datetime.now(UTC)
    doc = await db[WATCHES].find_one_and_update(
        {"_id": watch_id, **_visible(who)}, update, return_document=ReturnDocument.AFTER
    )
    return None if doc is None else _watch(doc, who)


async def delete_watch(db: AsyncDatabase[Doc], who: Identity, watch_id: str) -> bool:
    result = await db[WATCHES].delete_one({"_id": watch_id, **_visible(who)})
    return result.deleted_count == 1


async def watch_exists(db: AsyncDatabase[Doc], watch_id: str) -> bool:
    """Whether the watch exists, whoever owns it (an unsubscribe link's signature stands for its owner)."""
    return await db[WATCHES].count_documents({"_id": watch_id}, limit=1) == 1


async def stop_emails(db: AsyncDatabase[Doc], watch_id: str) -> bool:
    result = await db[WATCHES].update_one({"_id": watch_id}, {"$set": {"channels.email": None}})
    return result.matched_count == 1


async def candidate_watches_of(db: AsyncDatabase[Doc], models: Sequence[ModelFacts]) -> list[Doc]:
    """Active watches that may cover any of the models, in one query (the caller matches each model, saved
    searches included)."""
    if not models:
        return []
    owners = sorted({o for m in models for o in (m.owner, m.owner.lower())})
    keys: list[Doc] = [
        {"kind": "model", "target": {"$in": sorted({m.model_id for m in models})}},
        {"kind": "author", "target": {"$in": owners}},
        {"kind": "search"},
    ]
    if tasks := sorted({m.pipeline_tag for m in models if m.pipeline_tag}):
        keys.append({"kind": "task", "target": {"$in": tasks}})
    if libraries := sorted({m.library_name for m in models if m.library_name}):
        keys.append({"kind": "library", "target": {"$in": libraries}})
    return [doc async for doc in db[WATCHES].find({"paused": False, "$or": keys})]


async def watch_doc(db: AsyncDatabase[Doc], watch_id: str) -> Doc | None:
    return await db[WATCHES].find_one({"_id": watch_id})


# ---- alerts ------------------------------------------------------------------------------------------------


async def insert_alerts(db: AsyncDatabase[Doc], alerts: Sequence[Doc]) -> list[Doc]:
    """Store new alerts with their pending deliveries, in three round trips: which already alerted, one block of
    sequence numbers, one unordered insert (a concurrent duplicate is refused by the unique index). Returns the
    new ones (a crossing that already alerted is a replay, not new)."""
    if not alerts:
        return []
    done = {doc["_id"] async for doc in db[ALERTS].find({"_id": {"$in": [a["_id"] for a in alerts]}}, {"_id": 1})}
    fresh = list({a["_id"]: a for a in alerts if a["_id"] not in done}.values())
    if not fresh:
        return []
    counter = await db[COUNTERS].find_one_and_update(
        {"_id": ALERTS}, {"$inc": {"seq": len(fresh)}}, upsert=True, return_document=ReturnDocument.AFTER
    )
    assert counter is not None
    first = int(counter["seq"]) - len(fresh) + 1
    docs = []
    for n, alert in enumerate(fresh):
        doc = {**alert, "seq": first + n, "read_by": [], "lease_until": EPOCH}
        doc["pending"] = any(state == "pending" for state in doc["deliveries"].values())
        docs.append(doc)
    try:
        await db[ALERTS].insert_many(docs, ordered=False)
    except BulkWriteError as exc:  # duplicates only (a concurrent replay of the same crossing): the rest went in
        errors = exc.details.get("writeErrors", [])
        if exc.details.get("writeConcernErrors") or any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        refused = {e["index"] for e in errors}
        return [doc for n, doc in enumerate(docs) if n not in refused]
    return docs


async def insert_alert(db: AsyncDatabase[Doc], alert: Doc) -> bool:
    """Store a new alert with its pending deliveries; False when this crossing already alerted (a replay)."""
    return bool(await insert_alerts(db, [alert]))


def _alert(doc: Doc, who: Identity) -> WatchAlert:
    return WatchAlert.model_validate(
        {
            **doc,
            "alert_id": doc["_id"],
            "created_at": _aware(doc["created_at"]),
            "read": who.user_id in doc.get("read_by", []),
        }
    )


async def alert_feed(
    db: AsyncDatabase[Doc],
    who: Identity,
    *,
    watch_id: str | None,
    before: int | None,
    after: int | None,
    unread_only: bool,
    limit: int,
) -> tuple[list[WatchAlert], bool, int]:
    """(alerts, more, unread): newest first below `before`, or oldest first above `after` (the live socket)."""
    query: Doc = _visible(who)
    if watch_id is not None:
        query["watch_id"] = watch_id
    unread = await db[ALERTS].count_documents({**query, "read_by": {"$ne": who.user_id}})
    if unread_only:
        query["read_by"] = {"$ne": who.user_id}
    if after is not None:
        query["seq"] = {"$gt": after}
        order = ASCENDING
    else:
        if before is not None:
            query["seq"] = {"$lt": before}
        order = DESCENDING
    docs = [doc async for doc in db[ALERTS].find(query).sort("seq", order).limit(limit + 1)]
    return [_alert(d, who) for d in docs[:limit]], len(docs) > limit, unread


async def ack(db: AsyncDatabase[Doc], who: Identity, alert_id: str) -> WatchAlert | None:
    doc = await db[ALERTS].find_one_and_update(
        {"_id": alert_id, **_visible(who)},
        {"$addToSet": {"read_by": who.user_id}},
        return_document=ReturnDocument.AFTER,
    )
    return None if doc is None else _alert(doc, who)


async def claim_pending(db: AsyncDatabase[Doc], lease: timedelta) -> Doc | None:
    """The oldest alert with a channel left to deliver, leased so that one replica delivers it."""
    now = datetime.now(UTC)
    return await db[ALERTS].find_one_and_update(
        {"pending": True, "lease_until": {"$lt": now}},
        {"$set": {"lease_until": now + lease}},
        sort=[("seq", ASCENDING)],
        return_document=ReturnDocument.AFTER,
    )


async def finish_delivery(
    db: AsyncDatabase[Doc], alert_id: str, deliveries: dict[str, str], retry_at: datetime | None = None
) -> None:
    """The round's outcome. `retry_at`: a channel left pending is tried again then (the lease runs until then)."""
    pending = any(state == "pending" for state in deliveries.values())
    update: Doc = {"$set": {"deliveries": deliveries, "pending": pending, "delivered_at": datetime.now(UTC)}}
    if retry_at is not None:
        update["$set"]["lease_until"] = retry_at
        update["$inc"] = {"retry_rounds": 1}
    await db[ALERTS].update_one({"_id": alert_id}, update)


async def disable_webhook(db: AsyncDatabase[Doc], watch_id: str, url: str, reason: str) -> bool:
    """Switches the watch's webhook off if it is still `url` (the owner may have set another meanwhile)."""
    now = datetime.now(UTC)
    result = await db[WATCHES].update_one(
        {"_id": watch_id, "channels.webhook": url},
        {"$set": {"channels.webhook": None, "webhook_disabled": {"url": url, "reason": reason, "at": now}}},
    )
    return result.modified_count == 1


async def record_attempt(db: AsyncDatabase[Doc], attempt: Doc) -> None:
    await db[DELIVERIES].insert_one(attempt)


async def attempts(db: AsyncDatabase[Doc], alert_id: str) -> list[Doc]:
    return [d async for d in db[DELIVERIES].find({"alert_id": alert_id}, {"_id": 0}).sort("at", ASCENDING)]


async def digest_due(db: AsyncDatabase[Doc]) -> dict[str, list[Doc]]:
    """Alerts waiting for their watch's daily digest, per watch, oldest first."""
    grouped: dict[str, list[Doc]] = {}
    query = {"$or": [{"deliveries.webhook": "digest"}, {"deliveries.email": "digest"}]}
    async for doc in db[ALERTS].find(query).sort("seq", ASCENDING):
        grouped.setdefault(doc["watch_id"], []).append(doc)
    return grouped


async def digest_sent(db: AsyncDatabase[Doc], alert_ids: Sequence[str], channel: str, state: str) -> None:
    await db[ALERTS].update_many({"_id": {"$in": list(alert_ids)}}, {"$set": {f"deliveries.{channel}": state}})


async def get_alert(db: AsyncDatabase[Doc], who: Identity, alert_id: str) -> WatchAlert | None:
    doc = await db[ALERTS].find_one({"_id": alert_id, **_visible(who)})
    return None if doc is None else _alert(doc, who)
