"""Where a consumer group starts: a new `start_at="latest"` group reads only what is published after start()
(not the backlog), even before it has joined; once it has committed, a restart resumes where it stopped. And a
stopped consumer leaves its group."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from common.test_bus_transient import _consumer
from common.test_kafka_bus import _topic, snapshot

from hubpulse_common import kafka as kafka_module
from hubpulse_common.events import ModelSnapshot
from hubpulse_common.kafka import BatchConsumer, EventBus, Received


async def _publish(bus: EventBus, topic: str, ids: range) -> None:
    for i in ids:
        event = snapshot(i)
        await bus.publish_raw(topic, event.model_dump_json().encode(), key=event.key().encode(), headers=[])


async def _until(seen: list[int], n: int, timeout_s: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while len(seen) < n and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)


@pytest.fixture
async def bus(kafka) -> AsyncIterator[EventBus]:
    started = EventBus(kafka.url, "test-consumer-start")
    await started.start()
    yield started
    await started.stop()


async def test_a_new_latest_group_skips_the_backlog_and_a_restart_resumes_at_its_commit(kafka, bus: EventBus) -> None:
    topic = await _topic(kafka.url)
    seen: list[int] = []

    async def handler(batch: Sequence[Received[ModelSnapshot]]) -> None:
        seen.extend(r.event.downloads for r in batch)

    def consumer(group: str) -> BatchConsumer[ModelSnapshot]:
        return _consumer(kafka.url, topic, group, handler, bus, start_at="latest")

    group = f"g-{uuid.uuid4().hex[:8]}"
    await _publish(bus, topic, range(0, 5))  # the backlog: before the group existed
    first = consumer(group)
    await first.start()
    await _publish(bus, topic, range(5, 8))  # at once: the group has not joined yet
    await _until(seen, 3)
    await first.stop()
    assert sorted(seen) == [5, 6, 7]

    await _publish(bus, topic, range(8, 10))  # while it is down
    again = consumer(group)
    await again.start()
    await _until(seen, 5)
    await asyncio.sleep(0.5)  # nothing more comes
    await again.stop()
    assert sorted(seen) == [5, 6, 7, 8, 9]


async def test_a_started_consumer_exposes_its_counters_at_zero_before_any_message(kafka, bus: EventBus) -> None:
    """The dead-letter and failure alerts use increase(): a series first scraped at 1 would hide that first
    message, so every counter of a consumer exists at 0 once it starts."""
    from prometheus_client import REGISTRY

    topic = await _topic(kafka.url)
    group = f"g-{uuid.uuid4().hex[:8]}"

    async def handler(batch: Sequence[Received[ModelSnapshot]]) -> None:
        return None

    started = _consumer(kafka.url, topic, group, handler, bus)
    try:
        await started.start()
        names = ("consumed", "failed", "transient_failures", "dead_lettered")
        values = [
            REGISTRY.get_sample_value(f"hubpulse_kafka_{n}_total", {"topic": topic, "group": group}) for n in names
        ]
    finally:
        await started.stop()
    assert values == [0.0, 0.0, 0.0, 0.0]


async def _members(bootstrap: str, group: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
        (described,) = response.groups
        return [member[0] for member in described[5]]  # (error, group, state, protocol type, protocol, members)
    finally:
        await admin.close()


async def test_a_stopped_consumer_leaves_its_group_at_once(kafka, bus: EventBus) -> None:
    """From the group's first generation too (the embedded broker numbers it 0): a member that stayed would hold
    the next one's join until its session timed out."""
    topic = await _topic(kafka.url)
    seen: list[int] = []

    async def handler(batch: Sequence[Received[ModelSnapshot]]) -> None:
        seen.extend(r.event.downloads for r in batch)

    group = f"g-{uuid.uuid4().hex[:8]}"
    await _publish(bus, topic, range(0, 3))
    member = _consumer(kafka.url, topic, group, handler, bus)
    await member.start()
    await _until(seen, 3)
    assert len(await _members(kafka.url, group)) == 1
    await member.stop()
    assert await _members(kafka.url, group) == []


async def test_a_stop_while_the_group_holds_the_join_returns_within_the_stop_bound(
    kafka, bus: EventBus, monkeypatch
) -> None:
    """A stop has nothing in hand to drain while the consumer waits for its assignment, so it does not wait for it:
    a rebalance can hold a join for the slowest member's whole rebalance timeout (docs/decisions.md)."""
    monkeypatch.setattr(kafka_module, "STOP_TIMEOUT_S", 0.5)
    topic = await _topic(kafka.url)

    async def handler(batch: Sequence[Received[ModelSnapshot]]) -> None:
        raise AssertionError("nothing was published")

    member = _consumer(kafka.url, topic, f"g-{uuid.uuid4().hex[:8]}", handler, bus)
    await member.start()
    await asyncio.sleep(0.2)  # its first join is in flight: the broker holds it (half the session)
    assert not member._consumer.assignment()
    started = time.monotonic()
    await member.stop()
    assert time.monotonic() - started < 1.5
    assert not member.running
