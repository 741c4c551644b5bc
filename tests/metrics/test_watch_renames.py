"""A Hub rename (`renamed_from` on hub.features.v1) carries a model's watches and history to its new name (#14):
real MongoDB (SecantusDB), the handlers' own functions."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from pymongo import AsyncMongoClient

from hubpulse_common.events import ModelFeaturesPacked
from hubpulse_common.identity import Identity
from hubpulse_common.kafka import Received
from hubpulse_common.settings import load_settings
from hubpulse_common.watch_schemas import WatchIn
from hubpulse_metrics.settings import MetricsSettings
from hubpulse_metrics.watches import handlers, repository
from metrics.watch_support import features, score

OLD, NEW = "acme/tiny-old", "acme/tiny-new"
DAY1, DAY2, DAY3 = date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)


async def test_a_watch_follows_its_model_through_a_rename_and_its_crossing_still_fires(mongo: Any) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo.url)
    db = client[f"watch_renames_{uuid.uuid4().hex[:8]}"]
    settings = load_settings(MetricsSettings)
    store_features = handlers.features_handler(db)
    try:
        await repository.ensure_schema(db)
        who = Identity(user_id="u1", org_id="o1", role="member")
        watch = await repository.create_watch(
            db, who, WatchIn(kind="model", target=OLD, threshold=0.5, conditions=["threshold"])
        )
        for day in (DAY1, DAY2):
            await repository.store_facts(db, [features(OLD, day)])
            assert await handlers.judge(db, settings, score(OLD, day, 0.2).as_v1()) == 0

        renamed = [features(NEW, DAY3, renamed_from=OLD)]
        for _ in range(2):  # at least once: the mark may come again
            await store_features([Received(e, ModelFeaturesPacked.topic, 0, 0, None) for e in renamed])

        moved = await repository.get_watch(db, who, watch.watch_id)
        assert moved is not None
        assert moved.target == NEW
        assert await db[repository.SCORES].count_documents({"model_id": OLD}) == 0
        assert await db[repository.MODEL_DAYS].count_documents({"model_id": NEW}) == 3
        assert (await db[repository.MODELS].find_one({"_id": NEW}) or {}).get("first_seen") == DAY1.isoformat()
        assert await db[repository.MODELS].find_one({"_id": OLD}) is None
        # crossing 0.5 needs the old name's score of day 2 as the one before
        assert await handlers.judge(db, settings, score(NEW, DAY3, 0.7).as_v1()) == 1
        alert = await db[repository.ALERTS].find_one({"watch_id": watch.watch_id})
        assert alert is not None
        assert (alert["model_id"], alert["previous_probability"]) == (NEW, 0.2)
    finally:
        await client.drop_database(db.name)
        await client.close()
