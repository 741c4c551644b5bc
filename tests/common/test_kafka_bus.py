"""The bus against the real broker: at-least-once delivery, poison and failing messages, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from prometheus_client import REGISTRY
from support.consumers import session_timeout_ms

from hubpulse_common import kafka as kafka_module
from hubpulse_common.events import SCHEMA_VERSION_HEADER, ModelSnapshot, dlq_topic
from hubpulse_common.kafka import LOST, BatchConsumer, EventBus, Received, ensure_topics
from hubpulse_common.logging import TRACE_HEADER

WORKER = Path(__file__).with_name("bus_worker.py")


def snapshot(i: int) -> ModelSnapshot:
    return ModelSnapshot(model_id=f"org/model-{i}", snapshot_date=date(2026, 1, 1), downloads=i, likes=0)


async def _topic(bootstrap: str) -> str:
    topic = f"test.{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [topic], partitions=2)
    return topic


async def _publish(bootstrap: str, topic: str, n: int) -> None:
    bus = EventBus(bootstrap, "test-producer")
    await bus.start()
    try:
        for i in range(n):
            event = snapshot(i)
            await bus.publish_raw(topic, event.model_dump_json().encode(), key=event.key().encode(), headers=[])
    finally:
        await bus.stop()


async def _read_all(bootstrap: str, topic: str, expect: int, timeout_s: float = 15) -> list[tuple[bytes, dict]]:
    # no group: a group's join waits half a session on the embedded broker (docs/decisions.md)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    out: list[tuple[bytes, dict]] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(out) < expect and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out.extend((r.value, dict(r.headers)) for r in records)
    finally:
        await consumer.stop()
    return out


async def _wait_for(path: Path, timeout_s: float = 30) -> None:
    for _ in range(int(timeout_s * 20)):
        if path.exists():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def _worker(bootstrap: str, topic: str, group: str, out: Path, mode: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(WORKER), bootstrap, topic, group, str(out), mode])


async def test_crash_before_commit_redelivers(kafka, tmp_path: Path) -> None:
    topic = await _topic(kafka.url)
    await _publish(kafka.url, topic, 50)
    out = tmp_path / "handled.txt"
    crashed = _worker(kafka.url, topic, "g-crash", out, "crash")
    assert await asyncio.to_thread(crashed.wait, 60) == 17
    first = out.read_text().split()
    assert first, "the crashing worker handled nothing"

    out2 = tmp_path / "handled2.txt"
    survivor = _worker(kafka.url, topic, "g-crash", out2, "normal")
    try:
        for _ in range(600):
            if out2.exists() and len(set(out2.read_text().split())) >= 50:
                break
            await asyncio.sleep(0.1)
        again = out2.read_text().split()
    finally:
        survivor.send_signal(signal.SIGTERM)
        await asyncio.to_thread(survivor.wait, 30)
    # Everything the crashed worker handled but never committed comes again: at least once.
    assert set(first) <= set(again)
    assert len(set(again)) == 50


async def test_poison_and_failing_messages_go_to_dlq(kafka) -> None:
    topic = await _topic(kafka.url)
    await ensure_topics(kafka.url, [topic])
    await _publish(kafka.url, topic, 9)
    bus = EventBus(kafka.url, "test")
    await bus.start()
    await bus.publish_raw(topic, b"{not json", key=b"bad", headers=[])
    handled: list[str] = []
    attempts = {"n": 0}

    async def handle(batch: Sequence[Received[ModelSnapshot]]) -> None:
        attempts["n"] += 1
        if any(r.event.model_id == "org/model-3" for r in batch):
            raise RuntimeError("cannot store model-3")
        handled.extend(r.event.model_id for r in batch)

    consumer = BatchConsumer(
        bootstrap=kafka.url,
        group_id="g-dlq",
        topic=topic,
        event_type=ModelSnapshot,
        handler=handle,
        bus=bus,
        retry_wait_s=0.01,
        session_timeout_ms=session_timeout_ms(),
    )
    await consumer.start()
    try:
        dead = await _read_all(kafka.url, dlq_topic(topic), expect=2)
    finally:
        await consumer.stop()
        await bus.stop()
    errors = sorted(h["x-error-type"].decode() for _, h in dead)
    assert errors == ["RuntimeError", "ValidationError"]
    assert {h["x-original-topic"].decode() for _, h in dead} == {topic}
    assert any(b"cannot store model-3" in h["x-error"] for _, h in dead)
    # The stream went on: every other message was handled.
    assert sorted(set(handled)) == sorted(f"org/model-{i}" for i in range(9) if i != 3)
    assert attempts["n"] > 3  # retried before isolating the poison


async def test_sigterm_drains_the_batch_in_hand(kafka, tmp_path: Path) -> None:
    topic = await _topic(kafka.url)
    await _publish(kafka.url, topic, 20)
    out = tmp_path / "slow.txt"
    worker = _worker(kafka.url, topic, "g-drain", out, "slow")
    await _wait_for(Path(str(out) + ".started"))
    worker.send_signal(signal.SIGTERM)  # mid-batch
    assert await asyncio.to_thread(worker.wait, 30) == 0
    handled = set(out.read_text().split())
    assert handled, "the batch in hand was abandoned instead of finished"

    # Its offsets were committed: the group does not get those messages again.
    out2 = tmp_path / "after.txt"
    follower = _worker(kafka.url, topic, "g-drain", out2, "normal")
    await _wait_for(Path(str(out2) + ".ready"))
    await asyncio.sleep(4)
    follower.send_signal(signal.SIGTERM)
    await asyncio.to_thread(follower.wait, 30)
    again = set(out2.read_text().split()) if out2.exists() else set()
    assert not (handled & again)
    assert handled | again == {f"org/model-{i}" for i in range(20)}


def test_murmur2_many_matches_the_default_partitioner() -> None:
    import random

    from aiokafka.partitioner import DefaultPartitioner, murmur2

    from hubpulse_common.kafka import murmur2_many, partition_slots

    rng = random.Random(7)
    keys = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 41))) for _ in range(2000)]
    keys += [f"org-{i}/model-{i * 13}".encode() for i in range(2000)] + ["ünï/😀-模型".encode(), b""]
    assert murmur2_many(keys).tolist() == [murmur2(k) for k in keys]
    for n in (1, 3, 4, 7):
        assert partition_slots(keys, n).tolist() == [DefaultPartitioner()(k, list(range(n)), []) for k in keys]


def test_the_cached_partitioner_picks_the_default_partition() -> None:
    from aiokafka.partitioner import DefaultPartitioner

    from hubpulse_common.kafka import cached_partitioner

    keys = [f"dep_{i:06x}".encode() for i in range(3000)] + ["ünï/😀-模型".encode(), b""]
    for partitions in ([0], [0, 1, 2], [4, 9, 2, 7], list(range(12))):
        for _ in range(2):  # computed, then remembered
            picked = [cached_partitioner(k, partitions, partitions) for k in keys]
            assert picked == [DefaultPartitioner()(k, partitions, partitions) for k in keys]
    assert cached_partitioner(None, [0, 1, 2], [1]) == 1  # no key: an available partition, as the default


async def test_publish_bulk_keeps_partitioning_and_order(kafka) -> None:
    """publish_bulk: every event once, on the partition send() would pick for its key, in order per key."""
    from aiokafka.partitioner import DefaultPartitioner

    from hubpulse_common.logging import TRACE_HEADER

    topic = f"test.{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka.url, [topic], partitions=3, with_dlq=False)
    # 40 models x 100 updates of ~1.5 kB: several record batches per partition (1 MB each)
    keys = [f"org/model-{i % 40}".encode() for i in range(4000)]
    values = [snapshot(i).model_copy(update={"tags": [f"t{i}"] * 100}).model_dump_json().encode() for i in range(4000)]
    bus = EventBus(kafka.url, "test-bulk")
    await bus.start()
    try:
        assert await bus.publish_bulk(topic, keys, values, trace_id="trace-1") == 4000
        assert await bus.publish_bulk(topic, [], []) == 0
    finally:
        await bus.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka.url, auto_offset_reset="earliest", group_id=f"reader-{uuid.uuid4().hex[:6]}"
    )
    await consumer.start()
    got: list[tuple[int, bytes, int, dict]] = []
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while len(got) < 4000 and asyncio.get_running_loop().time() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                got.extend(
                    (tp.partition, r.key, ModelSnapshot.model_validate_json(r.value).downloads, dict(r.headers))
                    for r in records
                )
    finally:
        await consumer.stop()
    assert sorted(d for _, _, d, _ in got) == list(range(4000))
    assert {h[TRACE_HEADER] for *_, h in got} == {b"trace-1"}
    partitioner = DefaultPartitioner()
    for partition, key, _, _ in got:
        assert partition == partitioner(key, [0, 1, 2], [])
    by_key: dict[bytes, list[int]] = {}
    for _, key, downloads, _ in got:
        by_key.setdefault(key, []).append(downloads)
    assert all(seq == sorted(seq) for seq in by_key.values())


async def test_every_publish_path_sends_the_documented_headers(own_kafka) -> None:
    topic = ModelSnapshot.topic
    await ensure_topics(own_kafka.url, [topic])
    bus = EventBus(own_kafka.url, "test-headers")
    await bus.start()
    try:
        await bus.publish(snapshot(0), trace_id="trace-1")
        await bus.publish_many([snapshot(1)])
        await bus.publish_encoded(topic, [(b"org/model-2", snapshot(2).model_dump_json().encode())])
    finally:
        await bus.stop()
    received = await _read_all(own_kafka.url, topic, 3)
    assert len(received) == 3
    for _, headers in received:
        assert headers[SCHEMA_VERSION_HEADER] == b"1"
        assert TRACE_HEADER in headers
    assert {headers[TRACE_HEADER] for _, headers in received} >= {b"trace-1"}


async def test_best_effort_publishes_are_counted_and_seed_the_lost_series_once(kafka, monkeypatch) -> None:
    topic = ModelSnapshot.topic
    await ensure_topics(kafka.url, [topic])
    seeded: list[str] = []

    class Seeding:  # LOST, counting the series lookups (a lock and a dict per call on the predict path)
        def labels(self, name: str) -> Any:
            seeded.append(name)
            return LOST.labels(name)

    monkeypatch.setattr(kafka_module, "LOST", Seeding())
    published = REGISTRY.get_sample_value("hubpulse_kafka_published_total", {"topic": topic}) or 0.0
    bus = EventBus(kafka.url, "test-best-effort")
    await bus.start()
    try:
        for i in range(3):
            await bus.publish_best_effort(snapshot(i))
    finally:
        await bus.stop()  # flushes: every send is settled
    assert seeded == [topic]
    assert REGISTRY.get_sample_value("hubpulse_kafka_published_total", {"topic": topic}) == published + 3
    assert REGISTRY.get_sample_value("hubpulse_kafka_lost_total", {"topic": topic}) is not None
