"""`hubpulse dlq list|replay` against the real broker, with a real consumer that dead-letters poison."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from common.test_bus_transient import _committed, _consumer
from common.test_kafka_bus import _publish, _read_all, _topic
from support.polling import wait_for

from hubpulse_common.events import ModelSnapshot, dlq_topic
from hubpulse_common.kafka import EventBus, Received


async def _hubpulse(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HUBPULSE_KAFKA_BOOTSTRAP": bootstrap, "COLUMNS": "250"}
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "hubpulse", *args], env=env, capture_output=True, text=True, timeout=120
    )


async def test_list_then_replay_once_the_cause_is_fixed(kafka, tmp_path: Path) -> None:
    topic = await _topic(kafka.url)
    await _publish(kafka.url, topic, 6)
    bus = EventBus(kafka.url, "test")
    await bus.start()
    await bus.publish_raw(topic, b"{not json", key=b"bad", headers=[("x-request-id", b"trace-bad")])
    group = f"g-{uuid.uuid4().hex[:8]}"
    fixed = {"model-3": False}
    handled: list[str] = []

    async def handle(batch: Sequence[Received[ModelSnapshot]]) -> None:
        if not fixed["model-3"] and any(r.event.model_id == "org/model-3" for r in batch):
            raise ValueError("model-3 breaks a constraint")
        handled.extend(r.event.model_id for r in batch)

    consumer = _consumer(kafka.url, topic, group, handle, bus)
    await consumer.start()
    try:
        await wait_for(lambda: _committed(kafka.url, group, topic), lambda n: n == 7, interval_s=0.1)
        dead = await _read_all(kafka.url, dlq_topic(topic), expect=2)
        assert len(dead) == 2
        assert "org/model-3" not in handled

        listing = tmp_path / "dlq.json"
        listed = await _hubpulse(kafka.url, "dlq", "list", topic, "--json", str(listing))
        assert listed.returncode == 0, listed.stderr
        assert "2 dead letter(s)" in listed.stdout
        rows = json.loads(listing.read_text())
        assert sorted(r["error_type"] for r in rows) == ["ValidationError", "ValueError"]
        assert {r["original_topic"] for r in rows} == {topic}
        assert {r["consumer_group"] for r in rows} == {group}
        assert all(isinstance(r["original_offset"], int) and isinstance(r["original_partition"], int) for r in rows)
        assert sorted(r["key"] for r in rows) == ["bad", "org/model-3"]
        first_failure = min(datetime.fromisoformat(r["failed_at"]) for r in rows)

        dry = await _hubpulse(kafka.url, "dlq", "replay", f"{topic}.dlq", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert f"would replay 2 dead letter(s) to {topic}" in dry.stderr
        await asyncio.sleep(2)  # a dry run publishes nothing: the group stays where it was
        assert await _committed(kafka.url, group, topic) == 7

        fixed["model-3"] = True
        replay = await _hubpulse(kafka.url, "dlq", "replay", topic)
        assert replay.returncode == 0, replay.stderr
        assert f"replayed 2 dead letter(s) to {topic}" in replay.stderr
        await wait_for(lambda: _committed(kafka.url, group, topic), lambda n: n == 9, interval_s=0.1)
        assert "org/model-3" in handled
        # the unparseable one is still poison: back in the DLQ, with a later failure time
        dead = await _read_all(kafka.url, dlq_topic(topic), expect=3)
        assert len(dead) == 3
        # the copies kept their trace id, say where they came from, and carry one set of failure headers
        copies = [h for _, h in await _read_all(kafka.url, topic, expect=9) if "x-replayed-from" in h]
        assert len(copies) == 2
        assert all("x-error" not in h for h in copies)
        assert [h["x-request-id"] for h in copies if "x-request-id" in h] == [b"trace-bad"]
        again = [h for _, h in dead if "x-replayed-from" in h]
        assert len(again) == 1
        assert again[0]["x-request-id"] == b"trace-bad"
    finally:
        await consumer.stop()
        await bus.stop()

    since = (first_failure.isoformat()[:19]).replace("+00:00", "")
    recent = await _hubpulse(kafka.url, "dlq", "list", topic, "--since", since, "--json", str(listing))
    assert recent.returncode == 0, recent.stderr
    assert len(json.loads(listing.read_text())) >= 2  # seconds precision: the first two, and the new one
    later = max(datetime.fromisoformat(r["failed_at"]) for r in json.loads(listing.read_text()))
    newest = await _hubpulse(kafka.url, "dlq", "list", topic, "--since", later.isoformat(), "--json", str(listing))
    assert [r["error_type"] for r in json.loads(listing.read_text())] == ["ValidationError"], newest.stdout


async def test_bad_input_is_one_clear_line(kafka) -> None:
    bad_since = await _hubpulse(kafka.url, "dlq", "list", "hub.snapshots.v1", "--since", "yesterday")
    assert bad_since.returncode == 2
    assert "not an ISO 8601" in bad_since.stderr
    assert "Traceback" not in bad_since.stderr
    missing = await _hubpulse(kafka.url, "dlq", "replay", f"no.such.{uuid.uuid4().hex[:6]}")
    assert missing.returncode == 2
    assert "there is no topic" in missing.stderr
    assert "Traceback" not in missing.stderr
