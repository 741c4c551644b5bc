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

from aiokafka import AIOKafkaConsumer

from hubpulse_common.events import ModelSnapshot, dlq_topic
from hubpulse_common.kafka import BatchConsumer, EventBus, Received, ensure_topics

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
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=f"reader-{uuid.uuid4().hex[:6]}")
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

    consumer = BatchConsumer(bootstrap=kafka.url, group_id="g-dlq", topic=topic, event_type=ModelSnapshot,
                             handler=handle, bus=bus, retry_wait_s=0.01)
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
