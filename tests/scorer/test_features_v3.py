"""The scorer on hub.features.v3 against the real broker, PostgreSQL and S3: a redelivered message changes nothing
(each model-day scored and counted once), and a message that does not validate goes whole to hub.features.v3.dlq
while the messages after it on its partition are scored."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from auth.conftest import serving
from features.support import fetch
from support.polling import wait_for

from hubpulse_common.events import ModelFeaturesPacked, dlq_topic
from hubpulse_common.kafka import EventBus
from hubpulse_scorer.app import create_app as create_scorer_app
from hubpulse_scorer.model.artifact import TrainedModel
from scorer.test_explanations_on_demand import MODELS, _events, serving_challenger

# what a batch writes per model-day: a redelivery must leave all of it as it was; the build rows (details included)
# are not even rewritten (their row versions, xmin, stay: the upsert skips an unchanged row)
_WRITTEN = """
    SELECT 'daily' AS t, model_id, snapshot_date, concat_ws('|', downloads, likes, trending_rank, probability,
        model_version) AS v FROM catalog_daily WHERE model_id LIKE $1
    UNION ALL SELECT 'build', model_id, snapshot_date, xmin::text FROM catalog_build WHERE model_id LIKE $1
"""


async def _dead_letters(bootstrap: str) -> list[Any]:
    reader = AIOKafkaConsumer(
        dlq_topic(ModelFeaturesPacked.topic), bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await reader.start()
    try:
        batches = await reader.getmany(timeout_ms=2000)
        return [r for records in batches.values() for r in records]
    finally:
        await reader.stop()


async def test_a_redelivered_v2_message_changes_nothing_and_a_poison_one_is_dead_lettered_whole(
    service_env: dict[str, str], database_url: str, challenger: TrainedModel, own_kafka: Any
) -> None:
    prefix = f"v{uuid.uuid4().hex[:6]}/"
    scorer, version = serving_challenger(service_env, database_url, challenger, own_kafka)
    day = dt.date(2031, 4, 1)
    events = _events(challenger, prefix, day)
    first, second = ModelFeaturesPacked.of(events[: MODELS // 2]), ModelFeaturesPacked.of(events[MODELS // 2 :])
    poison = orjson.loads(first.model_dump_json())
    poison["likes"] = poison["likes"][1:]  # a column one short: the message does not validate
    # a later day's model: scored only after everything before it on the partition
    sentinel = ModelFeaturesPacked.of(_events(challenger, prefix + "late-", day + dt.timedelta(days=1))[:1])
    key = first.key().encode()  # every message on one partition, in this order

    bus = EventBus(own_kafka.url, "test-features-v3")
    await bus.start()

    async def send(*values: bytes) -> None:
        for value in values:
            await bus.publish_raw(ModelFeaturesPacked.topic, value, key=key, headers=[])

    def written() -> Any:
        return fetch(database_url, _WRITTEN, prefix + "%")

    try:
        async with serving(create_scorer_app(scorer)):
            await send(first.model_dump_json().encode(), orjson.dumps(poison), second.model_dump_json().encode())
            rows = await wait_for(
                lambda: fetch(database_url, "SELECT model_id FROM catalog_models WHERE model_id LIKE $1", prefix + "%"),
                lambda r: len(r) == MODELS,
                timeout_s=90,
            )
            assert {r["model_id"] for r in rows} == {e.model_id for e in events}
            before = sorted(map(tuple, await written()))

            await send(first.model_dump_json().encode(), sentinel.model_dump_json().encode())  # redelivered
            await wait_for(
                lambda: fetch(database_url, "SELECT 1 FROM catalog_daily WHERE model_id LIKE $1", f"{prefix}late-%"),
                lambda r: len(r) == 1,
                timeout_s=60,
            )
            after = sorted(map(tuple, await written()))
            assert [r for r in after if "late-" not in r[1]] == before  # nothing rewritten, nothing twice
            counts = await fetch(database_url, "SELECT built_rows FROM catalog_days WHERE snapshot_date = $1", day)
            assert [r["built_rows"] for r in counts] == [MODELS]
            scores = await fetch(
                database_url,
                "SELECT count(*) AS n, count(DISTINCT model_id) AS d, min(model_version) AS v "
                "FROM catalog_build WHERE model_id LIKE $1 AND snapshot_date = $2",
                prefix + "%",
                day,
            )
            assert (scores[0]["n"], scores[0]["d"], scores[0]["v"]) == (MODELS, MODELS, version)
    finally:
        await bus.stop()

    dead = await _dead_letters(own_kafka.url)
    assert [r.value for r in dead] == [orjson.dumps(poison)]  # the whole message, as it came
    assert dead[0].key == key
    assert b"likes" in dict(dead[0].headers)["x-error"]
