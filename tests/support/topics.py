"""Reading what the services published: a topic from its start to its end now."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer

from hubpulse_common.events import ModelScore, ModelScoresBatch


async def topic_values(bootstrap: str, topic: str) -> list[bytes]:
    """Every message value of `topic`, read from its start to its end now (partition by partition: the order across
    partitions is not the order published)."""
    return [value for _, value in await topic_records(bootstrap, topic)]


async def topic_records(bootstrap: str, topic: str) -> list[tuple[int, bytes]]:
    """(partition, value) of every message of `topic`, from its start to its end now; each partition's in order."""
    reader = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,  # and no group: a group's join waits half a session on the embedded broker
    )
    await reader.start()
    try:
        while not (partitions := reader.assignment()):
            await reader.getmany(timeout_ms=100)
        await reader.seek_to_beginning(*partitions)
        ends = await reader.end_offsets(list(partitions))
        out: list[tuple[int, bytes]] = []
        while [p for p, end in ends.items() if await reader.position(p) < end]:
            for partition, records in (await reader.getmany(timeout_ms=500)).items():
                out += [(partition.partition, record.value or b"") for record in records]
    finally:
        await reader.stop()
    return out


async def published_scores(bootstrap: str, prefix: str) -> list[ModelScore]:
    """hub.scores.v2's scores of the models of this prefix, one v1 event each: what the scorer's batches computed."""
    messages = [ModelScoresBatch.model_validate_json(v) for v in await topic_values(bootstrap, ModelScoresBatch.topic)]
    return [score for message in messages for score in message.as_v1() if score.model_id.startswith(prefix)]
