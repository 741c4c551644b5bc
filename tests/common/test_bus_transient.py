"""The Kafka bus under failures that pass: outages are waited out (never dead-lettered), rewinds skip nothing.

Faults are injected at the edges of the real bus (a handler or DLQ writer that fails for a while); the
broker is the real one. The end-to-end outages (a real PostgreSQL or broker restart under the running
pipeline) are in tests/platform/test_outages.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, MessageSizeTooLargeError
from common.test_kafka_bus import _publish, _read_all, _topic, snapshot
from pydantic import ValidationError
from pymongo.errors import AutoReconnect
from support.consumers import session_timeout_ms
from support.polling import wait_for

from hubpulse_common.events import ModelSnapshot, dlq_topic
from hubpulse_common.kafka import BatchConsumer, EventBus, Received, is_transient
from hubpulse_common.supervise import TaskDown


async def _committed(bootstrap: str, group: str, topic: str) -> int:
    """Sum of the group's committed offsets on `topic` (0 when it committed nothing); reads without joining."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await reader.start()
    try:
        partitions = reader.partitions_for_topic(topic) or set()
        if not partitions:
            await reader._client.force_metadata_update()
            partitions = reader.partitions_for_topic(topic) or set()
        assert partitions, topic
        return sum([(await reader.committed(TopicPartition(topic, p))) or 0 for p in partitions])
    finally:
        await reader.stop()


async def _readiness(consumer: BatchConsumer[ModelSnapshot]) -> str:
    try:
        await consumer.loop.check()
    except TaskDown as exc:
        return str(exc)
    return "ok"


def _consumer(
    bootstrap: str, topic: str, group: str, handler, bus: EventBus, **options: Any
) -> BatchConsumer[ModelSnapshot]:
    return BatchConsumer(
        bootstrap=bootstrap,
        group_id=group,
        topic=topic,
        event_type=ModelSnapshot,
        handler=handler,
        bus=bus,
        retry_wait_s=0.05,
        max_retry_wait_s=0.5,
        poll_timeout_ms=200,
        **{"session_timeout_ms": session_timeout_ms(), **options},
    )


def test_is_transient_tells_outages_from_poison() -> None:
    refused = OSError(111, "Connect call failed ('127.0.0.1', 5432)")
    assert isinstance(refused, ConnectionRefusedError)
    transient: list[BaseException] = [
        refused,
        ConnectionResetError(),
        TimeoutError(),
        OSError("Multiple exceptions: [Errno 111] ..., [Errno 99] ..."),
        asyncpg.CannotConnectNowError("the database system is shutting down"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.InterfaceError("pool is closed"),
        asyncpg.SerializationError("could not serialize access"),
        asyncpg.DeadlockDetectedError("deadlock detected"),
        asyncpg.TooManyConnectionsError("too many clients"),
        KafkaConnectionError(),
        KafkaTimeoutError(),
        AutoReconnect("mongo went away"),
        ExceptionGroup("task group", [ValueError("collateral"), ConnectionResetError()]),
    ]
    wrapped = RuntimeError("store failed")
    wrapped.__cause__ = asyncpg.CannotConnectNowError("starting up")
    transient.append(wrapped)
    poison: list[BaseException] = [
        ValueError("bad value"),
        RuntimeError("cannot store model-3"),
        KeyError("missing"),
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.DataError("invalid input syntax"),
        asyncpg.QueryCanceledError("statement timeout"),  # a batch too slow stays too slow: isolate it
        FileNotFoundError(2, "no such file"),
        MessageSizeTooLargeError(),
        ExceptionGroup("task group", [ValueError("a"), KeyError("b")]),
    ]
    with pytest.raises(ValidationError) as info:
        ModelSnapshot.model_validate_json(b"{")
    poison.append(info.value)
    assert [e for e in transient if not is_transient(e)] == []
    assert [e for e in poison if is_transient(e)] == []


async def test_a_3s_outage_is_waited_out_with_nothing_dead_lettered_or_committed_meanwhile(kafka) -> None:
    """H1: the audit's repro. The handler's store refuses connections for 3 s, then comes back."""
    topic = await _topic(kafka.url)
    await _publish(kafka.url, topic, 10)
    group = f"g-{uuid.uuid4().hex[:8]}"
    handled: list[str] = []
    outage = {"until": None}

    async def handle(batch: Sequence[Received[ModelSnapshot]]) -> None:
        now = asyncio.get_running_loop().time()
        if outage["until"] is None:
            outage["until"] = now + 3.0
        if now < outage["until"]:
            raise OSError(111, "Connect call failed ('127.0.0.1', 5432)")
        handled.extend(r.event.model_id for r in batch)

    bus = EventBus(kafka.url, "test")
    await bus.start()
    consumer = _consumer(kafka.url, topic, group, handle, bus)
    await consumer.start()
    try:
        # during the outage: readiness names it, and no offset is committed
        state = await wait_for(
            lambda: _readiness(consumer), lambda s: s != "ok" and "not started" not in s, interval_s=0.1
        )
        assert "retrying a transient failure" in state
        assert "ConnectionRefusedError" in state
        assert await _committed(kafka.url, group, topic) == 0
        await wait_for(lambda: _committed(kafka.url, group, topic), lambda n: n == 10, interval_s=0.1)
        assert await _readiness(consumer) == "ok"
    finally:
        await consumer.stop()
        await bus.stop()
    assert sorted(set(handled)) == sorted(f"org/model-{i}" for i in range(10))
    # nothing went to the DLQ (a short read: the topic is empty)
    assert await _read_all(kafka.url, dlq_topic(topic), expect=1, timeout_s=3) == []


async def test_stop_during_an_outage_abandons_the_batch_uncommitted(kafka) -> None:
    """A stop (SIGTERM) while the store is down ends promptly and commits nothing: the next owner redoes it."""
    topic = await _topic(kafka.url)
    await _publish(kafka.url, topic, 6)
    group = f"g-{uuid.uuid4().hex[:8]}"
    calls = {"n": 0}

    async def down(batch: Sequence[Received[ModelSnapshot]]) -> None:
        calls["n"] += 1
        raise asyncpg.CannotConnectNowError("the database system is starting up")

    bus = EventBus(kafka.url, "test")
    await bus.start()
    consumer = _consumer(kafka.url, topic, group, down, bus)
    await consumer.start()
    await wait_for(lambda: _calls(calls), lambda n: n >= 3, interval_s=0.1)
    started = asyncio.get_running_loop().time()
    await consumer.stop()
    assert asyncio.get_running_loop().time() - started < 20
    assert await _committed(kafka.url, group, topic) == 0

    handled: list[str] = []

    async def up(batch: Sequence[Received[ModelSnapshot]]) -> None:
        handled.extend(r.event.model_id for r in batch)

    follower = _consumer(kafka.url, topic, group, up, bus)
    await follower.start()
    try:
        await wait_for(lambda: _committed(kafka.url, group, topic), lambda n: n == 6, interval_s=0.1)
    finally:
        await follower.stop()
        await bus.stop()
    assert sorted(handled) == sorted(f"org/model-{i}" for i in range(6))
    assert await _read_all(kafka.url, dlq_topic(topic), expect=1, timeout_s=3) == []


async def _calls(calls: dict[str, int]) -> int:
    return calls["n"]


class _FailingDlq(EventBus):
    """The real bus, whose first `failures` DLQ writes raise `error`."""

    def __init__(self, bootstrap: str, error: Exception, failures: int = 1) -> None:
        super().__init__(bootstrap, "test")
        self._error = error
        self._left = failures

    async def publish_raw(self, topic: str, value: bytes, *, key: bytes | None, headers) -> None:
        if topic.endswith(".dlq") and self._left > 0:
            self._left -= 1
            raise self._error
        await super().publish_raw(topic, value, key=key, headers=headers)


@pytest.mark.parametrize(
    "error",
    [RuntimeError("the DLQ write failed"), KafkaTimeoutError()],
    ids=["deterministic-dlq-failure", "transient-dlq-failure"],
)
async def test_a_failed_dlq_write_in_a_fresh_groups_first_batch_skips_nothing(kafka, error: Exception) -> None:
    """M10 (1): 1 poison + 5 good events, the first DLQ write fails; then 3 more events. A fresh group has no
    committed offset to rewind to: the batch must be redone from its own first offsets."""
    topic = await _topic(kafka.url)
    producer = EventBus(kafka.url, "test-producer")
    await producer.start()
    first = await _single_partition_batch(producer, topic, range(5))
    group = f"g-{uuid.uuid4().hex[:8]}"
    handled: list[str] = []

    async def handle(batch: Sequence[Received[ModelSnapshot]]) -> None:
        handled.extend(r.event.model_id for r in batch)

    bus = _FailingDlq(kafka.url, error)
    await bus.start()
    consumer = _consumer(kafka.url, topic, group, handle, bus)
    await consumer.start()
    try:
        await wait_for(lambda: _committed(kafka.url, group, topic), lambda n: n == first, interval_s=0.1)
        await _single_partition_batch(producer, topic, range(5, 8), poison=False)
        await wait_for(lambda: _committed(kafka.url, group, topic), lambda n: n == first + 3, interval_s=0.1)
    finally:
        await consumer.stop()
        await bus.stop()
        await producer.stop()
    assert sorted(set(handled)) == sorted(f"org/model-{i}" for i in range(8))
    dead = await _read_all(kafka.url, dlq_topic(topic), expect=1)
    assert len({h["x-original-offset"] for _, h in dead}) == 1


async def _single_partition_batch(bus: EventBus, topic: str, ids: range, *, poison: bool = True) -> int:
    """Publish to partition 0 only (one fetch, one batch): a poison value first, then the events. Returns how
    many records were published."""
    records = [b"{not json"] if poison else []
    records += [snapshot(i).model_dump_json().encode() for i in ids]
    for value in records:
        await bus._producer.send_and_wait(topic, value, key=b"k", partition=0)
    return len(records)


async def test_a_poll_failure_before_any_assignment_does_not_end_the_loop(kafka) -> None:
    """M10 (2): a KafkaError while no partition is assigned (e.g. mid-rebalance after a broker outage) used to
    end the consumer loop from inside its own error handler."""
    topic = await _topic(kafka.url)
    await _publish(kafka.url, topic, 4)
    handled: list[str] = []

    async def handle(batch: Sequence[Received[ModelSnapshot]]) -> None:
        handled.extend(r.event.model_id for r in batch)

    bus = EventBus(kafka.url, "test")
    await bus.start()
    consumer = _consumer(kafka.url, topic, f"g-{uuid.uuid4().hex[:8]}", handle, bus)
    real_getmany = consumer._consumer.getmany
    failed = {"n": 0}

    async def getmany_failing_first(*args, **kwargs):
        if failed["n"] == 0:
            failed["n"] += 1
            assert not consumer._consumer.assignment()
            raise KafkaError("broker went away")
        return await real_getmany(*args, **kwargs)

    consumer._consumer.getmany = getmany_failing_first
    await consumer.start()
    try:
        await wait_for(lambda: _handled(handled), lambda n: n >= 4, interval_s=0.1)
        assert consumer.running
        assert await _readiness(consumer) == "ok"
    finally:
        await consumer.stop()
        await bus.stop()
    assert failed["n"] == 1
    assert sorted(set(handled)) == sorted(f"org/model-{i}" for i in range(4))


async def _handled(handled: list[str]) -> int:
    return len(set(handled))
