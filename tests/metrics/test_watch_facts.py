"""What the watches know of models comes from hub.features.v3 messages of many rows: each row to its own model."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from pymongo import AsyncMongoClient

from hubpulse_common.events import ModelFeaturesPacked
from hubpulse_metrics.watches import repository
from metrics.watch_support import features

DAY = date(2026, 11, 2)


async def test_each_row_of_a_batch_is_stored_as_its_own_models_facts(mongo: Any) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo.url)
    db = client[f"watch_facts_{uuid.uuid4().hex[:8]}"]
    try:
        rows = [
            row
            for i, task in enumerate(("text-generation", "fill-mask", "image-classification"))
            for row in features(f"acme/m{i}", DAY, pipeline_tag=task, downloads=100 * i or None, likes=i).as_v1()
        ]
        await repository.store_facts(db, [ModelFeaturesPacked.of(rows)])
        stored = {doc["_id"]: doc async for doc in db[repository.MODELS].find()}
        assert {m: (d["pipeline_tag"], d["downloads"], d["likes"]) for m, d in stored.items()} == {
            "acme/m0": ("text-generation", None, 0),
            "acme/m1": ("fill-mask", 100, 1),
            "acme/m2": ("image-classification", 200, 2),
        }
        # a day's downloads only where the Hub gave them
        days = {doc["_id"]: doc["downloads"] async for doc in db[repository.MODEL_DAYS].find()}
        assert days == {"acme/m1|2026-11-02": 100, "acme/m2|2026-11-02": 200}
    finally:
        await client.drop_database(db.name)
        await client.close()
