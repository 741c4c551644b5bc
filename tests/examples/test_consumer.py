"""examples/consumer.py, the integrators' starting point, reads real hub.scores.v2 messages from a broker."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

from support.consumers import session_timeout_ms

from hubpulse_common.events import Contribution, ModelScoresBatch
from hubpulse_common.kafka import EventBus, ensure_topics

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "consumer.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hubpulse_example_consumer", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _scores(*scores: tuple[str, float]) -> ModelScoresBatch:
    """One hub.scores.v2 message of these (model id, probability) scores."""
    top = [Contribution(feature="log_downloads", value=12.0, contribution=0.8)]
    return ModelScoresBatch(
        snapshot_date=date(2026, 12, 3),
        model_version="trending-test",
        label="trending",
        horizon_days=7,
        threshold=0.4,
        model_id=[model_id for model_id, _ in scores],
        probability=[probability for _, probability in scores],
        top_features=[top if probability >= 0.4 else [] for _, probability in scores],
    )


async def _publish(bootstrap: str, scores: list[ModelScoresBatch]) -> None:
    bus = EventBus(bootstrap, "example-test")
    await bus.start()
    try:
        for event in scores:
            await bus.publish(event)
    finally:
        await bus.stop()


async def test_example_consumer_reads_each_score_once_and_commits(own_kafka) -> None:
    example = _load()
    await ensure_topics(own_kafka.url, [ModelScoresBatch.topic])
    rising = _scores(("org/rising", 0.71), ("org/flat", 0.02))
    await _publish(own_kafka.url, [rising, rising])  # the second: a redelivery

    received: list[str] = []
    stop = asyncio.Event()
    # the suite's session: the broker holds a group's join for half of it (docs/decisions.md, the embedded platform)
    options = {"session_timeout_ms": session_timeout_ms(), "heartbeat_interval_ms": 1000}

    async def collect(score: Any) -> None:
        received.append(f"{score.model_id} {score.probability}")
        if len(received) == 2:
            stop.set()

    await asyncio.wait_for(example.consume(own_kafka.url, "integrator", collect, stop=stop, **options), timeout=60)
    # each score once, the redelivered message's included
    assert sorted(received) == ["org/flat 0.02", "org/rising 0.71"]

    # the offsets were committed: the same group starts after them, with the score published meanwhile
    await _publish(own_kafka.url, [_scores(("org/new", 0.5))])
    again: list[str] = []
    stop_again = asyncio.Event()

    async def collect_again(score: Any) -> None:
        again.append(score.model_id)
        stop_again.set()

    await asyncio.wait_for(
        example.consume(own_kafka.url, "integrator", collect_again, stop=stop_again, **options), timeout=60
    )
    assert again == ["org/new"]
